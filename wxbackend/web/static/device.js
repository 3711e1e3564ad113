/* 评价器: a window's evaluator screen — the clerk, the case's QR code, the center's live ratings.
 *
 * The screen is paired once: it asks for the window's device key (made by an administrator),
 * trades it for a device token (POST /api/v1/device/pair) and keeps the token in localStorage.
 * It then reads GET /api/v1/device/stream (Server-Sent Events, read with fetch() because
 * EventSource cannot send the Authorization header): `case` shows the case and its code (the
 * image from the event's qr_url, fetched with the device token — only this screen can get it),
 * `rated` thanks the citizen, `idle` shows the placeholder. A 401 (the key was rotated) asks
 * for the key again. The page reads nothing from its own URL: a link cannot put a code on it. */
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

  var TOKEN_KEY = "wxb.device." + windowCode;
  var qrBox = $("qr-box");
  var shown = null; // the qr_url on screen
  var tokenOf = function () { try { return window.localStorage.getItem(TOKEN_KEY); } catch (e) { return null; } };

  function screenStatus(state, text) {
    $("screen-status").dataset.state = state;
    $("screen-status").textContent = text;
  }

  function placeholder(text, className) {
    shown = null;
    WXB.clear(qrBox);
    WXB.append(qrBox, WXB.el("p", { className: className || "qr-placeholder", text: text }));
  }

  function showIdle() {
    qrBox.dataset.state = "idle";
    $("case-line").textContent = "";
    placeholder("办结后，评价二维码将显示在这里");
  }

  function showThanks() {
    qrBox.dataset.state = "rated";
    $("case-line").textContent = "";
    placeholder("感谢您的评价！", "qr-thanks");
  }

  function showCase(c) {
    qrBox.dataset.state = "case";
    $("case-line").textContent = "办件 " + c.case_no_masked + " · " + c.item;
    if (shown === c.qr_url) return;
    shown = c.qr_url;
    // Same-origin path only; fetched with the device token, shown as a data: URL (CSP img-src).
    if (typeof c.qr_url !== "string" || c.qr_url.charAt(0) !== "/" || c.qr_url.charAt(1) === "/") return;
    fetch(c.qr_url, { headers: { Authorization: "Bearer " + tokenOf() } }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.blob();
    }).then(function (blob) {
      var reader = new FileReader();
      reader.onload = function () {
        if (shown !== c.qr_url) return; // a newer code arrived meanwhile
        WXB.clear(qrBox);
        WXB.append(qrBox, WXB.el("img", { src: reader.result, alt: "办件评价二维码", className: "qr-image" }));
      };
      reader.readAsDataURL(blob);
    }).catch(function () {
      if (shown === c.qr_url) placeholder("二维码加载失败，请联系窗口工作人员");
    });
  }

  function askKey(message) {
    try { window.localStorage.removeItem(TOKEN_KEY); } catch (e) { /* private mode */ }
    $("screen").hidden = true;
    $("pair-form").hidden = false;
    WXB.showError($("pair-error"), message || "");
  }

  $("pair-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var body = JSON.stringify({ window_code: windowCode, device_key: $("device-key").value });
    WXB.getJSON("/api/v1/device/pair", {
      method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" }, body: body,
    }).then(function (answer) {
      window.localStorage.setItem(TOKEN_KEY, answer.device_token);
      $("device-key").value = "";
      startScreen();
    }).catch(function (err) {
      WXB.showError($("pair-error"), err.status === 401 ? "设备密钥不正确。" : "配对失败：" + err.message);
    });
  });

  function onEvent(name, data) {
    if (name === "case") showCase(data);
    else if (name === "rated") showThanks();
    else if (name === "idle") showIdle();
  }

  /* Read the SSE stream; resolves when it ends (then we reconnect). */
  function readStream(response) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (step) {
        if (step.done) return;
        buffer += decoder.decode(step.value, { stream: true }).replace(/\r\n/g, "\n");
        var cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          var block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          var name = "message", data = "";
          block.split("\n").forEach(function (line) {
            if (line.indexOf("event: ") === 0) name = line.slice(7);
            else if (line.indexOf("data: ") === 0) data += line.slice(6);
          });
          if (data) {
            try { onEvent(name, JSON.parse(data)); } catch (e) { /* a broken event is skipped */ }
          }
        }
        return pump();
      });
    }
    return pump();
  }

  function startScreen() {
    var token = tokenOf();
    if (!token) { askKey(""); return; }
    $("pair-form").hidden = true;
    $("screen").hidden = false;
    screenStatus("connecting", "正在连接…");
    fetch("/api/v1/device/stream", { headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" } })
      .then(function (response) {
        if (response.status === 401) { askKey("本窗口的设备密钥已更换或配对已失效，请重新配对。"); return null; }
        if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
        screenStatus("on", "已连接");
        return readStream(response).then(function () { throw new Error("ended"); });
      })
      .catch(function () {
        screenStatus("off", "连接中断，正在重连…");
        window.setTimeout(startScreen, 5000);
      });
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

  startScreen();
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
