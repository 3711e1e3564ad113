/* 评价器: a window's evaluator screen — the clerk, the case's QR code, the center's live ratings.
 *
 * The QR code of a case is a mini-program code that only a signed partner request may fetch
 * (GET /api/v1/partner/qrcode.png?scene=…, X-Partner-* headers). The window system fetches it
 * and shows it here by loading this page with ?qr=<url of the image> — an https: URL, a
 * data:image/png;base64,… URL, or a path on this server. Without ?qr= a placeholder shows. */
"use strict";

(function () {
  var $ = function (id) { return document.getElementById(id); };
  var windowCode = document.body.dataset.window;
  var centerCode = document.body.dataset.center;
  var FEED_SIZE = 6;
  var feed = $("feed");

  function renderStaff(card) {
    $("center-name").textContent = card.center.name;
    $("window-name").textContent = card.window.name;
    var photo = WXB.clear($("staff-photo"));
    var staff = card.staff;
    if (!staff) {
      $("staff-name").textContent = "暂无工作人员";
      $("staff-no").textContent = "";
      WXB.append(photo, WXB.el("span", { className: "photo-initial", text: "—" }));
      return;
    }
    $("staff-name").textContent = staff.name;
    $("staff-no").textContent = "工号：" + staff.staff_no;
    var url = WXB.safeUrl(staff.photo_url);
    var initial = WXB.el("span", { className: "photo-initial", text: staff.name.charAt(0) });
    if (url) {
      var img = WXB.el("img", { src: url, alt: staff.name + " 的照片" });
      img.onerror = function () { WXB.clear(photo); WXB.append(photo, initial); };
      WXB.append(photo, img);
    } else {
      WXB.append(photo, initial);
    }
  }

  function loadStaff() {
    return WXB.getJSON("/api/v1/public/windows/" + encodeURIComponent(windowCode))
      .then(renderStaff)
      .catch(function () { /* keep what is shown; the next refresh tries again */ });
  }

  function renderQr() {
    var raw = new URLSearchParams(window.location.search).get("qr");
    var url = WXB.safeUrl(raw);
    if (!url) return;
    var box = WXB.clear($("qr-box"));
    var img = WXB.el("img", { src: url, alt: "办件评价二维码", className: "qr-image" });
    img.onerror = function () {
      WXB.clear(box);
      WXB.append(box, WXB.el("p", { className: "qr-placeholder", text: "二维码加载失败，请联系窗口工作人员" }));
    };
    WXB.append(box, img);
  }

  function addRating(shape, live) {
    if (shape.center && shape.center.code !== centerCode) return;
    var card = WXB.ratingCard(shape);
    if (live) WXB.upsertCard(feed, card, FEED_SIZE);
    else if (feed.children.length < FEED_SIZE) feed.appendChild(card);
  }

  function loadFeed() {
    var url = "/api/v1/public/evaluations" + WXB.query({ center: centerCode, limit: FEED_SIZE });
    return WXB.getJSON(url).then(function (page) {
      WXB.showError($("feed-error"), "");
      page.items.forEach(function (e) {
        if (!feed.querySelector('[data-id="' + CSS.escape(String(e.id)) + '"]')) addRating(e, false);
      });
    }).catch(function (err) {
      WXB.showError($("feed-error"), "评价暂时无法获取：" + err.message);
    });
  }

  function tick() {
    try {
      $("clock").textContent = new Intl.DateTimeFormat("zh-CN", {
        timeZone: "Asia/Shanghai", month: "long", day: "numeric", weekday: "short",
        hour: "2-digit", minute: "2-digit", hour12: false,
      }).format(new Date());
    } catch (e) {
      $("clock").textContent = new Date().toLocaleString();
    }
  }

  renderQr();
  loadStaff();
  window.setInterval(loadStaff, 60000); // a new clerk at the window shows within a minute
  tick();
  window.setInterval(tick, 15000);
  WXB.ready.then(startFeed);

  function startFeed() {
    WXB.live("/api/v1/public/live" + WXB.query({ center: centerCode }), $("live-status"), function (s) {
      addRating(s, true);
    }, function () {
      // Back after a drop: the newest ratings again (a card already shown is replaced in place).
      var url = "/api/v1/public/evaluations" + WXB.query({ center: centerCode, limit: FEED_SIZE });
      WXB.getJSON(url).then(function (page) {
        page.items.slice().reverse().forEach(function (e) { addRating(e, true); });
      }).catch(function () { /* the next reconnect tries again */ });
    });
    loadFeed();
  }
})();
