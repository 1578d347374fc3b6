// SPDX-License-Identifier: MIT
// tileheat cohort page: the cohort table (index_files/cohort-data.js) as a sortable table with a
// thumbnail and a link to each slide's viewer.
(function () {
    'use strict';
    var data = window.tileheatCohort;
    var names = data.classes;
    var rows = data.slides.map(function (s) {
        var pct = {};
        (s.classes || []).forEach(function (c) { pct[c.name] = c.percent; });
        return { s: s, pct: pct };
    });
    var columns = [
        { title: 'slide', key: function (r) { return r.s.id; } },
        { title: '', key: null },
        { title: 'status', key: function (r) { return r.s.status; } }
    ].concat(names.map(function (n) {
        return { title: n + ' %', num: true, key: function (r) { return r.pct[n] === undefined ? -1 : r.pct[n]; } };
    }));
    var sortCol = 0, asc = true;

    function el(tag, cls, text) {
        var e = document.createElement(tag);
        if (cls) { e.className = cls; }
        if (text !== undefined) { e.textContent = text; }
        return e;
    }

    function render() {
        var head = document.getElementById('head'), body = document.getElementById('rows');
        head.textContent = '';
        body.textContent = '';
        columns.forEach(function (c, i) {
            var th = el('th', i === sortCol ? (asc ? 'sorted-asc' : 'sorted-desc') : '', c.title);
            if (c.key) {
                th.addEventListener('click', function () {
                    asc = sortCol === i ? !asc : true;
                    sortCol = i;
                    render();
                });
            }
            head.appendChild(th);
        });
        var key = columns[sortCol].key;
        var sorted = rows.slice().sort(function (a, b) {
            var x = key(a), y = key(b), r = x < y ? -1 : x > y ? 1 : 0;
            return asc ? r : -r;
        });
        sorted.forEach(function (r) {
            var tr = el('tr'), s = r.s, id = encodeURIComponent(s.id);
            var name = el('td');
            if (s.viewer) {
                var a = el('a', null, s.id);
                a.href = id + '/viewer/index.html';
                name.appendChild(a);
            } else {
                name.textContent = s.id;
            }
            tr.appendChild(name);
            var th = el('td');
            if (s.viewer) {
                var link = el('a');
                link.href = id + '/viewer/index.html';
                var img = el('img');
                img.src = id + '/viewer/thumbnail.jpg';
                img.alt = s.id;
                link.appendChild(img);
                th.appendChild(link);
            }
            tr.appendChild(th);
            var st = el('td', 'status-' + s.status, s.status + (s.error ? ': ' + s.error : ''));
            tr.appendChild(st);
            names.forEach(function (n) {
                tr.appendChild(el('td', 'num', r.pct[n] === undefined ? '' : r.pct[n].toFixed(1)));
            });
            body.appendChild(tr);
        });
        var c = data.counts || {};
        document.getElementById('summary').textContent = data.slides.length + ' slides: ' +
            (c.done || 0) + ' done, ' + (c.failed || 0) + ' failed, ' + (c.pending || 0) + ' pending';
    }
    render();
}());
