/* 实时评价公示: figures, the newest ratings (load more by cursor), new ratings live. */
"use strict";

(function () {
  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(window.location.search);
  var center = params.get("center") || "";
  var list = $("ratings");
  var more = $("more");
  var cursor = null;
  var statsTimer = null;
  var statsDueAt = 0; // when the figures include the newest live rating (ms)
  var statsMaxAge = 10; // seconds the server keeps figures: its answer's Cache-Control max-age
  var centerNamed = false;

  /* The figures and how long the server keeps them (no max-age: not cached, 0 s). The
   * browser's own copy is skipped (no-cache): the timing below is the server's. */
  function fetchStats() {
    var url = "/api/v1/public/stats" + WXB.query({ center: center });
    var options = { credentials: "same-origin", cache: "no-cache", headers: { Accept: "application/json" } };
    return fetch(url, options).then(function (response) {
      var found = /max-age=(\d+)/.exec(response.headers.get("Cache-Control") || "");
      statsMaxAge = found ? Number(found[1]) : 0;
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  /* A rate is a number or null (nothing to divide by): null shows "—". */
  function loadStats() {
    return fetchStats().then(function (s) {
      WXB.showError($("stats-error"), "");
      $("fig-satisfaction").textContent = WXB.pct(s.satisfaction_rate);
      $("fig-bad").textContent = WXB.pct(s.bad_rate);
      $("fig-active-rate").textContent = WXB.pct(s.active_rate);
      $("fig-active").textContent = WXB.pct(s.active_good_rate);
      $("fig-unrated").textContent = WXB.pct(s.unrated_rate);
      $("fig-on-time").textContent = WXB.pct(s.on_time_rectification_rate);
      $("fig-total").textContent = String(s.total);
      renderLevels(s);
    }).catch(function (err) {
      WXB.showError($("stats-error"), "统计数据暂时无法获取：" + err.message);
    });
  }

  function renderLevels(s) {
    var box = WXB.clear($("levels"));
    var total = s.total || 0;
    WXB.LEVEL_ORDER.forEach(function (level) {
      var count = (s.by_level && s.by_level[String(level)]) || 0;
      var bar = WXB.el("span", { className: "bar-fill level-" + level });
      bar.style.width = (total ? (count / total) * 100 : 0).toFixed(1) + "%";
      WXB.append(box, WXB.el(
        "div", { className: "level-row" },
        WXB.el("span", { className: "level-name", text: WXB.levelLabel(level) }),
        WXB.el("span", { className: "bar" }, bar),
        WXB.el("span", { className: "level-count", text: String(count) })
      ));
    });
  }

  /* After a live rating the server may answer its cached figures for up to max-age seconds,
   * so ask again once that has passed (plus a second). Debounced: a burst of ratings costs one
   * request; ratings that keep coming refresh the figures once per max-age, the last one
   * included. */
  function refreshStatsSoon() {
    statsDueAt = Date.now() + (statsMaxAge + 1) * 1000;
    if (!statsTimer) armStats(statsDueAt - Date.now());
  }

  function armStats(delay) {
    statsTimer = window.setTimeout(function () {
      loadStats().then(function () {
        statsTimer = null; // held while loading, so a rating meanwhile arms no second timer
        var left = statsDueAt - Date.now();
        if (left > 0) armStats(left); // a later rating is not in these figures yet
      });
    }, Math.max(0, delay));
  }

  function nameCenter(items) {
    if (!center || centerNamed) return;
    $("filter").hidden = false;
    var named = items.filter(function (e) { return e.center && e.center.code === center; })[0];
    $("filter-name").textContent = named ? named.center.name : center;
    centerNamed = Boolean(named);
  }

  function loadPage() {
    more.disabled = true;
    var url = "/api/v1/public/evaluations" + WXB.query({ center: center, cursor: cursor, limit: 20 });
    return WXB.getJSON(url).then(function (page) {
      WXB.showError($("list-error"), "");
      page.items.forEach(function (e) {
        var known = list.querySelector('[data-id="' + CSS.escape(String(e.id)) + '"]');
        if (!known) list.appendChild(WXB.ratingCard(e, { linkCenter: !center }));
      });
      nameCenter(page.items);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      $("list-empty").hidden = list.children.length > 0;
    }).catch(function (err) {
      WXB.showError($("list-error"), "评价列表暂时无法获取：" + err.message);
    }).then(function () {
      more.disabled = false;
    });
  }

  function onRating(shape) {
    if (center && (!shape.center || shape.center.code !== center)) return;
    var added = WXB.upsertCard(list, WXB.ratingCard(shape, { linkCenter: !center }));
    $("list-empty").hidden = true;
    nameCenter([shape]);
    if (added) refreshStatsSoon();
  }

  /* After the live stream was down: the newest page again (cards are keyed by id, so only
   * the missed ones are added, newest first) and fresh figures. */
  function catchUp() {
    var url = "/api/v1/public/evaluations" + WXB.query({ center: center, limit: 20 });
    WXB.getJSON(url).then(function (page) {
      page.items.slice().reverse().forEach(onRating);
      loadStats();
    }).catch(function () { /* the next reconnect tries again */ });
  }

  /* The formula under the figures names the levels as the server counts them. */
  function nameLevels() {
    var label = function (level) { return WXB.levelLabel(level); };
    var good = WXB.LEVEL_ORDER.filter(function (level) { return !WXB.isBad(level); });
    var bad = WXB.LEVEL_ORDER.filter(WXB.isBad);
    $("good-levels").textContent = good.map(label).join("＋");
    $("bad-levels").textContent = bad.map(label).join("＋");
  }

  more.addEventListener("click", loadPage);
  if (center) {
    $("filter").hidden = false;
    $("filter-name").textContent = center;
  }
  WXB.ready.then(function () {
    nameLevels();
    // Subscribe first: a rating made while the first page loads is not missed (cards are
    // keyed by id, so one that is in both appears once).
    WXB.live("/api/v1/public/live" + WXB.query({ center: center }), $("live-status"), onRating, catchUp);
    loadStats();
    loadPage();
  });
})();
