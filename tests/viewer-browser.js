// SPDX-License-Identifier: MIT
// The viewer in a real browser (run by tests/viewer.sh): Debian's chromium or firefox-esr
// (told apart by the executable's name), headless, driven by puppeteer-core (CDP for chromium,
// WebDriver BiDi for Firefox). Opens VIEWER/index.html over file:// with the browser's default
// file-access rules,
// waits for the tiles, and prints TAP: every tile URL is a file (glass and clear tiles the one
// shared file), no console errors, no failed or missing-file requests, every layer
// toggles, zooming to the deepest level loads level-0 tiles of the region in view, the tile
// under the pointer shows its probabilities, and the screenshot's colours match heatmap.png's
// where the heatmap is drawn. Screenshots go to OUTDIR.
//   node viewer-browser.js BROWSER VIEWER_DIR HEATMAP_PNG OUTDIR [FIRST]
// With FIRST the tests are numbered from FIRST + 1 and no plan is printed (tests/viewer.sh's).
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const puppeteer = require('puppeteer-core');

const [chromium, viewerDir, heatmapPng, outDir, firstArg] = process.argv.slice(2);
const firefox = /firefox/.test(path.basename(chromium)), who = firefox ? 'firefox' : 'chromium';
const first = Number(firstArg || 0);
let n = first, failed = 0;
function plan() { if (firstArg === undefined) { console.log('1..' + n); } }
function ok(cond, name, diag) {
    n++;
    if (!cond) { failed++; }
    console.log((cond ? 'ok ' : 'not ok ') + n + ' - ' + who + ': ' + name);
    if (!cond && diag) { console.log('# ' + String(diag).split('\n').join('\n# ')); }
}

// An 8-bit, non-interlaced RGB or RGBA PNG (what chromium and tileheat write) as RGBA.
function decodePng(buf) {
    let pos = 8, w = 0, h = 0, type = 0;
    const idat = [];
    while (pos < buf.length) {
        const len = buf.readUInt32BE(pos), kind = buf.toString('ascii', pos + 4, pos + 8);
        const data = buf.subarray(pos + 8, pos + 8 + len);
        if (kind === 'IHDR') {
            w = data.readUInt32BE(0); h = data.readUInt32BE(4); type = data[9];
            if (data[8] !== 8 || data[12] !== 0 || (type !== 2 && type !== 6)) {
                throw new Error('unsupported PNG');
            }
        } else if (kind === 'IDAT') {
            idat.push(data);
        }
        pos += 12 + len;
    }
    const raw = zlib.inflateSync(Buffer.concat(idat)), bpp = type === 6 ? 4 : 3, stride = w * bpp;
    const out = Buffer.alloc(w * h * 4), prev = Buffer.alloc(stride), cur = Buffer.alloc(stride);
    for (let y = 0; y < h; y++) {
        const f = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
        for (let i = 0; i < stride; i++) {
            const a = i >= bpp ? cur[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
            let p = 0;
            if (f === 1) { p = a; } else if (f === 2) { p = b; } else if (f === 3) { p = (a + b) >> 1; }
            else if (f === 4) {
                const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
                p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
            }
            cur[i] = (line[i] + p) & 255;
        }
        for (let x = 0; x < w; x++) {
            for (let k = 0; k < 3; k++) { out[(y * w + x) * 4 + k] = cur[x * bpp + k]; }
            out[(y * w + x) * 4 + 3] = bpp === 4 ? cur[x * bpp + 3] : 255;
        }
        cur.copy(prev);
    }
    return { w, h, px: out };
}

async function main() {
    const browser = await puppeteer.launch(Object.assign({
        executablePath: chromium, headless: true,
        defaultViewport: { width: 1280, height: 860 }, protocolTimeout: 60000
    }, firefox ? { browser: 'firefox' } : { args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] }));
    const page = await browser.newPage();
    const errors = [], failures = [], requests = [];
    page.on('console', (m) => { if (m.type() === 'error') { errors.push(m.text()); } });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('requestfailed', (r) => failures.push(r.url() + ': ' + (r.failure() || {}).errorText));
    page.on('request', (r) => requests.push(r.url()));
    // what the page loaded: the browser's requests, then the tiles OpenSeadragon says it loaded
    // (Firefox reports no file:// request to puppeteer; chromium reports both)
    const seen = async () => requests.concat(await page.evaluate(() =>
        window.tileheatViewer ? window.tileheatViewer.loaded.slice() : []));
    const url = 'file://' + path.resolve(viewerDir, 'index.html');
    const ready = () => page.waitForFunction(
        () => window.tileheatViewer && window.tileheatViewer.ready(), { timeout: 60000, polling: 100 });
    await page.goto(url, { waitUntil: 'load', timeout: 60000 });
    await ready();
    await new Promise((r) => setTimeout(r, 300));
    const view = await page.$('#view');
    const home = await view.screenshot({ path: path.join(outDir, 'viewer-home.png') });
    await page.screenshot({ path: path.join(outDir, 'viewer-page.png') });
    const cfg = await page.evaluate(() => window.tileheatViewer.config);
    // a data: URL (Firefox loads a built-in font as one) goes nowhere
    const outside = (await seen()).filter((u) => !u.startsWith('file://') && !u.startsWith('data:'));
    ok(outside.length === 0, 'every request is a file of the folder', outside.join('\n'));

    // every tile of every level of every pyramid: its URL is a file of the folder, and a tile
    // config.js marks as shared (glass, nothing drawn) is the pyramid's one shared file
    const urls = await page.evaluate(() => {
        const v = window.tileheatViewer.viewer, out = [];
        for (let i = 0; i < v.world.getItemCount(); i++) {
            const src = v.world.getItemAt(i).source, d = i ? window.tileheatConfig.layers[i - 1] : window.tileheatConfig.slide;
            const own = [], shared = [];
            for (let level = 0; level < d.levels; level++) {
                const n = src.getNumTiles(level), runs = d.sharedRuns[level];
                let t = 0;
                runs.forEach((r, k) => { for (let j = 0; j < r; j++, t++) { if (k % 2) { shared.push([level, t % n.x, Math.floor(t / n.x)]); } } });
                for (let y = 0; y < n.y; y++) { for (let x = 0; x < n.x; x++) { own.push(src.getTileUrl(level, x, y)); } }
            }
            out.push({ shared: d.shared, urls: own, sharedUrls: shared.map((s) => src.getTileUrl(s[0], s[1], s[2])) });
        }
        return out;
    });
    const missing = [], wrong = [];
    let nShared = 0;
    urls.forEach((p) => {
        p.urls.forEach((u) => { if (!fs.existsSync(path.join(viewerDir, u))) { missing.push(u); } });
        p.sharedUrls.forEach((u) => { nShared++; if (u !== p.shared) { wrong.push(u); } });
    });
    ok(missing.length === 0 && wrong.length === 0 && nShared > 0 && urls[0].sharedUrls.length > 0,
        'every tile URL is a file of the folder; ' + nShared + ' glass or clear tiles are the shared file',
        'missing: ' + missing.slice(0, 10).join(' ') + '; shared tiles with their own URL: ' + wrong.slice(0, 10).join(' '));

    // every layer toggles: its image goes clear and the view changes, then it comes back
    for (let i = 0; i < cfg.layers.length; i++) {
        await page.click('#layer-' + i);
        await ready();
        const off = await page.evaluate((k) => window.tileheatViewer.viewer.world.getItemAt(k + 1).getOpacity(), i);
        const shot = await view.screenshot();
        await page.click('#layer-' + i);
        await ready();
        const on = await page.evaluate((k) => window.tileheatViewer.viewer.world.getItemAt(k + 1).getOpacity(), i);
        ok(off === 0 && on === 1 && !shot.equals(home), 'layer ' + i + ' (' + cfg.classes[cfg.layers[i].class].name + ') toggles',
            'opacity off ' + off + ', on ' + on + ', view changed ' + !shot.equals(home));
    }

    // the colours where the heatmap is drawn: the view with the layers against heatmap.png
    for (let i = 0; i < cfg.layers.length; i++) { await page.click('#layer-' + i); }
    await ready();
    await new Promise((r) => setTimeout(r, 300));
    const plain = decodePng(await view.screenshot({ path: path.join(outDir, 'viewer-plain.png') }));
    for (let i = 0; i < cfg.layers.length; i++) { await page.click('#layer-' + i); }
    await ready();
    const geo = await page.evaluate(() => {
        const it = window.tileheatViewer.viewer.world.getItemAt(0);
        const a = it.viewerElementToImageCoordinates(new OpenSeadragon.Point(0, 0));
        const b = it.viewerElementToImageCoordinates(new OpenSeadragon.Point(1000, 0));
        return { x: a.x, y: a.y, s: (b.x - a.x) / 1000 };
    });
    const shot = decodePng(home), ref = decodePng(fs.readFileSync(heatmapPng));
    const w0 = cfg.slide.width, h0 = cfg.slide.height;
    const thumbLong = Math.min(2000, Math.max(w0, h0)), k = Math.max(w0, h0) / thumbLong;
    // 8×8 blocks of the view that the heatmap covers (it changes every pixel there), each
    // against the mean of heatmap.png over the same level-0 square: means, so that the tissue's
    // texture, resampled differently by the two, does not count
    const B = 8;
    let count = 0, sum = 0;
    for (let by = 0; by + B <= shot.h; by += B) {
        for (let bx = 0; bx + B <= shot.w; bx += B) {
            const m = [0, 0, 0], r = [0, 0, 0];
            let drawn = 0, inside = true;
            for (let y = by; y < by + B; y++) {
                for (let x = bx; x < bx + B; x++) {
                    const i = (y * shot.w + x) * 4;
                    const d = Math.abs(shot.px[i] - plain.px[i]) + Math.abs(shot.px[i + 1] - plain.px[i + 1]) +
                        Math.abs(shot.px[i + 2] - plain.px[i + 2]);
                    drawn += d >= 30 ? 1 : 0;
                    for (let c = 0; c < 3; c++) { m[c] += shot.px[i + c]; }
                }
            }
            const lx0 = geo.x + bx * geo.s, ly0 = geo.y + by * geo.s, lx1 = lx0 + B * geo.s, ly1 = ly0 + B * geo.s;
            inside = lx0 >= 0 && ly0 >= 0 && lx1 < w0 && ly1 < h0;
            if (drawn < B * B || !inside) { continue; }
            let nr = 0;
            for (let hy = Math.floor(ly0 / k); hy < Math.floor(ly1 / k); hy++) {
                for (let hx = Math.floor(lx0 / k); hx < Math.floor(lx1 / k); hx++) {
                    const j = (hy * ref.w + hx) * 4;
                    for (let c = 0; c < 3; c++) { r[c] += ref.px[j + c]; }
                    nr++;
                }
            }
            for (let c = 0; c < 3; c++) { sum += Math.abs(m[c] / (B * B) - r[c] / nr) / 3; }
            count++;
        }
    }
    const mean = count ? sum / count : 1e9;
    ok(count > 50 && mean < 6, 'the heatmap\'s colours match heatmap.png where it is drawn',
        count + ' blocks of ' + B + '×' + B + ' px compared, mean |difference| ' + mean.toFixed(2) + ' of 255');
    console.log('# colour check: ' + count + ' blocks, mean |difference| ' + mean.toFixed(2) + ' of 255');

    // the tile under the pointer: the first tile run, its probabilities
    const first = await page.evaluate(() => {
        const g = window.tileheatViewer.config.grid;
        return new Promise((resolve) => {
            const s = document.createElement('script');
            const before = window.tileheatTiles;
            window.tileheatTiles = function (c, flat) { before(c, flat); resolve({ col: flat[0], row: flat[1], g: g }); };
            s.src = 'data/tiles-' + g.chunks[Math.floor(g.chunks.length / 2)] + '.js';
            document.body.appendChild(s);
        });
    });
    const px = first.g.x0 + (first.col + 0.5) * first.g.step_x, py = first.g.y0 + (first.row + 0.5) * first.g.step_y;
    const at = await page.evaluate((x, y) => {
        const v = window.tileheatViewer.viewer, it = v.world.getItemAt(0);
        const p = it.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
        const r = v.canvas.getBoundingClientRect();
        return { x: r.left + p.x, y: r.top + p.y };
    }, px, py);
    await page.mouse.move(at.x, at.y);
    await page.waitForFunction(() => /%/.test(document.getElementById('tile-info').textContent), { timeout: 10000 })
        .catch(() => {});
    const info = await page.$eval('#tile-info', (e) => e.textContent);
    ok(info.indexOf('tile ' + first.col + ', ' + first.row) >= 0 && /%/.test(info),
        'the tile under the pointer shows its probabilities', info);

    // zoom to the deepest level over that tile: level-0 tiles of that region are loaded
    const before = (await seen()).length;
    await page.evaluate((x, y) => {
        const v = window.tileheatViewer.viewer, it = v.world.getItemAt(0);
        v.viewport.panTo(it.imageToViewportCoordinates(new OpenSeadragon.Point(x, y)), true);
        v.viewport.zoomTo(v.viewport.getMaxZoom(), null, true);
    }, px, py);
    await new Promise((r) => setTimeout(r, 500));
    await ready();
    await new Promise((r) => setTimeout(r, 300));
    await view.screenshot({ path: path.join(outDir, 'viewer-deep.png') });
    const top = cfg.slide.levels - 1, re = new RegExp('/slide_files/' + top + '/(\\d+)_(\\d+)\\.jpg$');
    const deep = (await seen()).slice(before).map((u) => u.match(re)).filter(Boolean)
        .map((m) => [Number(m[1]), Number(m[2])]);
    const cx = Math.floor(px / 256), cy = Math.floor(py / 256);
    const near = deep.every((t) => Math.abs(t[0] - cx) <= 4 && Math.abs(t[1] - cy) <= 4);
    ok(deep.some((t) => t[0] === cx && t[1] === cy) && near,
        'zoomed to the deepest level: level-0 tiles of the region in view are loaded',
        'wanted ' + cx + '_' + cy + ' at level ' + top + '; loaded ' + JSON.stringify(deep));

    ok(errors.length === 0, 'no console errors', errors.join('\n'));
    const failedTiles = await page.evaluate(() => window.tileheatViewer.failed.slice());
    ok(failures.length + failedTiles.length === 0, 'no failed requests', failures.concat(failedTiles).join('\n'));
    const all = await seen();
    const absent = all.filter((u) => u.startsWith('file://') && !fs.existsSync(decodeURIComponent(new URL(u).pathname)));
    ok(absent.length === 0 && all.some((u) => u.endsWith('/shared/glass.jpg')),
        'no request for a missing file (no 404), and glass tiles were loaded from shared/glass.jpg', absent.join('\n'));
    await browser.close();
    plan();
    process.exit(failed ? 1 : 0);
}

main().catch((e) => {
    console.log('not ok ' + (n + 1) + ' - the browser test ran to the end');
    failed++;
    console.log('# ' + String(e && e.stack || e).split('\n').join('\n# '));
    n++;
    plan();
    process.exit(1);
});
