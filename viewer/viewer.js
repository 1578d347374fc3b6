// SPDX-License-Identifier: MIT
// tileheat viewer: OpenSeadragon with the slide and the heatmap layers described inline (a page
// opened from file:// may not fetch their .dzi files), the layer switches, opacity, a scale bar,
// and the tile under the pointer from data/tiles-N.js, which is loaded with <script> when the
// pointer first gets to its rows.
(function () {
    'use strict';
    var cfg = window.tileheatConfig;
    var nClasses = cfg.classes.length;
    var chunks = {};    // chunk -> {"col,row": [p0, p1, ...]}
    var requested = {}; // chunk -> true once its script was added
    var hasChunk = {};
    cfg.grid.chunks.forEach(function (c) { hasChunk[c] = true; });
    var last = null;    // the last pointer position in level-0 px

    function el(tag, cls, text) {
        var e = document.createElement(tag);
        if (cls) { e.className = cls; }
        if (text !== undefined) { e.textContent = text; }
        return e;
    }

    // A Deep Zoom pyramid described inline. Tiles that are the pyramid's one shared image (glass,
    // nothing drawn) have no file of their own: d.sharedRuns says which (per level, run lengths
    // over its tiles in row-major order, alternating own and shared, own first), and they load
    // d.shared, once for all of them (OpenSeadragon caches tiles by URL).
    function source(d) {
        var ts = new OpenSeadragon.DziTileSource({
            width: d.width, height: d.height, tileSize: d.tileSize, tileOverlap: d.overlap,
            tilesUrl: d.url, fileFormat: d.format
        });
        var shared = d.sharedRuns.map(function (runs, level) {
            if (!runs.length) { return null; }
            var bits = new Uint8Array(runs.reduce(function (a, b) { return a + b; }, 0));
            for (var i = 0, at = 0; i < runs.length; at += runs[i], i++) {
                if (i % 2) { bits.fill(1, at, at + runs[i]); }
            }
            return bits;
        });
        ts.getTileUrl = function (level, x, y) {
            var bits = shared[level];
            if (bits && bits[y * this.getNumTiles(level).x + x]) { return d.shared; }
            return OpenSeadragon.DziTileSource.prototype.getTileUrl.call(this, level, x, y);
        };
        return ts;
    }

    var items = [{ tileSource: source(cfg.slide), x: 0, y: 0, width: 1 }];
    cfg.layers.forEach(function (l) {
        // a layer pixel is l.scale level-0 px: the layer spans its own width × scale
        items.push({ tileSource: source(l), x: 0, y: 0, width: l.width * l.scale / cfg.slide.width });
    });
    var viewer = OpenSeadragon({
        element: document.getElementById('view'),
        prefixUrl: 'openseadragon/images/',
        tileSources: items,
        drawer: 'canvas',
        showNavigator: true,
        navigatorPosition: 'TOP_RIGHT',
        maxZoomPixelRatio: 2,
        visibilityRatio: 0.5,
        imageLoaderLimit: 8,
        timeout: 60000,
        gestureSettingsMouse: { clickToZoom: false }
    });

    /* ------------------------------------------------------------ the panel */

    document.getElementById('title').textContent = cfg.title;
    document.title = cfg.title + ' \u2014 tileheat';
    var opacity = 1;
    var shown = cfg.layers.map(function () { return true; });

    function applyOpacity() {
        for (var i = 0; i < cfg.layers.length; i++) {
            var item = viewer.world.getItemAt(i + 1);
            if (item) { item.setOpacity(shown[i] ? opacity : 0); }
        }
    }

    var layersBox = document.getElementById('layers');
    cfg.layers.forEach(function (l, i) {
        var cls = cfg.classes[l.class];
        var row = el('label', 'layer');
        var box = el('input');
        box.type = 'checkbox';
        box.checked = true;
        box.id = 'layer-' + i;
        box.addEventListener('change', function () {
            shown[i] = box.checked;
            applyOpacity();
        });
        var sw = el('span', 'swatch');
        if (l.color) {
            sw.style.background = l.color;
        } else {
            sw.className = 'swatch ramp';
            sw.style.background = 'linear-gradient(to right, ' + l.stops.join(', ') + ')';
        }
        row.appendChild(box);
        row.appendChild(sw);
        row.appendChild(el('span', 'name', cls.name));
        row.appendChild(el('span', 'pct', cls.percent.toFixed(1) + '%'));
        layersBox.appendChild(row);
    });
    var slider = document.getElementById('opacity');
    slider.addEventListener('input', function () {
        opacity = slider.value / 100;
        document.getElementById('opacity-value').textContent = slider.value + '%';
        applyOpacity();
    });

    var links = document.getElementById('links');
    cfg.links.forEach(function (name) {
        var li = el('li');
        var a = el('a', null, name);
        a.href = '../' + name;
        li.appendChild(a);
        links.appendChild(li);
    });
    document.getElementById('about').textContent = cfg.mode + ' heatmap, tileheat ' + cfg.tileheat +
        (cfg.mpp ? ', ' + cfg.mpp.toPrecision(4) + ' \u00b5m/px' : '');

    /* ------------------------------------------------------------ the tile under the pointer */

    window.tileheatTiles = function (chunk, flat) {
        var m = {};
        for (var i = 0; i + 2 + nClasses <= flat.length; i += 2 + nClasses) {
            m[flat[i] + ',' + flat[i + 1]] = flat.slice(i + 2, i + 2 + nClasses);
        }
        chunks[chunk] = m;
        if (last) { showTile(last); }
    };

    function loadChunk(c) {
        if (requested[c] || !hasChunk[c]) { return; }
        requested[c] = true;
        var s = document.createElement('script');
        s.src = 'data/tiles-' + c + '.js';
        document.body.appendChild(s);
    }

    function showTile(p) {
        var g = cfg.grid, box = document.getElementById('tile-info');
        var col = Math.floor((p.x - g.x0) / g.step_x), row = Math.floor((p.y - g.y0) / g.step_y);
        var inTile = col >= 0 && row >= 0 && col < g.cols && row < g.rows &&
            p.x - g.x0 - col * g.step_x < g.tile_w && p.y - g.y0 - row * g.step_y < g.tile_h;
        box.textContent = '';
        box.className = '';
        var where = 'x ' + Math.round(p.x) + ', y ' + Math.round(p.y) + ' px';
        if (!inTile) {
            box.className = 'muted';
            box.textContent = where + ': no tile here';
            return;
        }
        var c = Math.floor(row / g.chunk_rows);
        loadChunk(c);
        var probs = chunks[c] && chunks[c][col + ',' + row];
        box.appendChild(el('div', null, 'tile ' + col + ', ' + row + ' (' + where + ')'));
        if (!probs) {
            box.appendChild(el('div', 'muted', hasChunk[c] && !chunks[c] ? 'loading\u2026'
                : 'not run (glass)'));
            return;
        }
        var table = el('table');
        var order = probs.map(function (p, i) { return i; });
        order.sort(function (a, b) { return probs[b] - probs[a]; });
        order.forEach(function (i) {
            var tr = el('tr');
            var sw = el('td');
            var s = el('span', 'swatch');
            s.style.display = 'inline-block';
            s.style.background = cfg.classes[i].color;
            sw.appendChild(s);
            tr.appendChild(sw);
            tr.appendChild(el('td', null, cfg.classes[i].name));
            tr.appendChild(el('td', 'num', (100 * probs[i]).toFixed(1) + '%'));
            table.appendChild(tr);
        });
        box.appendChild(table);
    }

    new OpenSeadragon.MouseTracker({
        element: viewer.canvas,
        moveHandler: function (e) {
            var item = viewer.world.getItemAt(0);
            if (!item) { return; }
            last = item.viewerElementToImageCoordinates(e.position);
            showTile(last);
        }
    });

    /* ------------------------------------------------------------ the scale bar */

    function updateScale() {
        var item = viewer.world.getItemAt(0), bar = document.getElementById('scalebar');
        if (!item || !cfg.mpp) { bar.style.display = 'none'; return; }
        var a = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
        var b = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(1000, 0));
        var umPerScreenPx = cfg.mpp * 1000 / (b.x - a.x);
        var target = 120 * umPerScreenPx, len = 1;
        var steps = [1, 2, 5];
        outer: for (var e = -1; e < 7; e++) {
            for (var k = 0; k < 3; k++) {
                var v = steps[k] * Math.pow(10, e);
                if (v > target) { break outer; }
                len = v;
            }
        }
        document.getElementById('scalebar-bar').style.width = (len / umPerScreenPx) + 'px';
        document.getElementById('scalebar-label').textContent =
            len >= 1000 ? (len / 1000) + ' mm' : len + ' \u00b5m';
    }
    viewer.addHandler('animation', updateScale);
    viewer.addHandler('open', updateScale);
    viewer.addHandler('resize', updateScale);

    /* ------------------------------------------------------------ for tests and scripts */

    // the tiles OpenSeadragon loaded and failed to load, as their URLs (a browser's own record of
    // file:// loads differs: Firefox reports none to a test driver)
    var loaded = [], failed = [];
    function tileUrl(e) {
        var t = e.tile;
        return new URL(t.getUrl ? t.getUrl() : t.url, document.baseURI).href;
    }
    viewer.addHandler('tile-loaded', function (e) { loaded.push(tileUrl(e)); });
    viewer.addHandler('tile-load-failed', function (e) { failed.push(tileUrl(e) + ': ' + e.message); });

    window.tileheatViewer = {
        viewer: viewer,
        config: cfg,
        loaded: loaded,
        failed: failed,
        // every image of the world added and all the tiles its view needs drawn
        ready: function () {
            var n = viewer.world.getItemCount();
            if (n !== items.length) { return false; }
            for (var i = 0; i < n; i++) {
                var it = viewer.world.getItemAt(i);
                if (it.getOpacity() > 0 && !it.getFullyLoaded()) { return false; }
            }
            return true;
        },
        showTile: showTile
    };
}());
