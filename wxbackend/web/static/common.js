/* Shared helpers of the pages: DOM building (text only, never HTML), labels, formatting,
 * JSON fetching, the public rating card and the live stream. No dependencies.
 * The labels of levels, stages, targets and channels, and which levels are a 差评, come from
 * GET /api/v1/public/levels (the server's one rule): pages start once WXB.ready resolves. */
"use strict";

var WXB = (function () {
  var LEVELS = {}; // value → label
  var BAD = {}; // value → true for a 差评
  var LEVEL_ORDER = []; // the levels, best first
  var STAGES = {};
  var TARGETS = {};
  var CHANNELS = {};
  var TICKET_STATUS = {
    open: "差评待核实",
    verified: "已核实，整改中",
    rectified: "已整改，待回访",
    called_back: "已回访",
    closed: "已办结",
    invalid: "核实为无效差评",
  };
  var COMMENT_STATUS = { visible: "公开", pending_review: "待审核", hidden: "已隐藏" };

  /* Fill the label tables in place (the exported objects are these same ones). */
  function fillLabels(catalogue) {
    catalogue.levels.forEach(function (level) {
      LEVELS[level.value] = level.label;
      BAD[level.value] = Boolean(level.bad);
      LEVEL_ORDER.push(level.value);
    });
    catalogue.stages.forEach(function (s) { STAGES[s.code] = s.label; });
    catalogue.targets.forEach(function (t) { TARGETS[t.code] = t.label; });
    catalogue.channels.forEach(function (c) { CHANNELS[c.code] = c.label; });
  }

  function isBad(level) {
    return Boolean(BAD[level]);
  }

  /* el("div", {className: "x", text: "y", href: "/a"}, child, "text", ...) */
  function el(tag, attrs) {
    var node = document.createElement(tag);
    var key;
    attrs = attrs || {};
    for (key in attrs) {
      if (!Object.prototype.hasOwnProperty.call(attrs, key)) continue;
      var value = attrs[key];
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "onclick" || key === "onsubmit" || key === "onchange") node[key] = value;
      else if (key === "hidden" || key === "disabled" || key === "checked" || key === "required")
        node[key] = Boolean(value);
      else if (key === "href" || key === "src") node.setAttribute(key, safeUrl(value) || "#");
      else node.setAttribute(key, String(value));
    }
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  /* append(node, child, child, ...): nodes, text (as text), arrays; null/false skipped. */
  function append(node, child) {
    if (arguments.length > 2) {
      for (var i = 1; i < arguments.length; i++) append(node, arguments[i]);
      return node;
    }
    if (child === null || child === undefined || child === false) return node;
    if (Array.isArray(child)) {
      child.forEach(function (c) { append(node, c); });
    } else if (child instanceof Node) {
      node.appendChild(child);
    } else {
      node.appendChild(document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  /* Only same-origin paths, https: and data:image/ URLs may become href/src. */
  function safeUrl(value) {
    if (typeof value !== "string" || !value) return null;
    if (value.charAt(0) === "/" && value.charAt(1) !== "/" && value.charAt(1) !== "\\") return value;
    if (/^https:\/\//i.test(value)) return value;
    if (/^data:image\/(png|jpeg|gif|webp);base64,[A-Za-z0-9+\/=]+$/i.test(value)) return value;
    if (value.charAt(0) === "?" || value.charAt(0) === "#") return value;
    return null;
  }

  function stars(level) {
    var n = Math.max(0, Math.min(5, Number(level) || 0));
    return el(
      "span",
      { className: "stars level-" + n, title: LEVELS[n] || "", "aria-label": n + " 星 " + (LEVELS[n] || "") },
      "★★★★★".slice(0, n),
      el("span", { className: "stars-off" }, "★★★★★".slice(0, 5 - n))
    );
  }

  function levelLabel(level) {
    return LEVELS[level] || String(level);
  }

  var timeFormat = null;
  function fmtTime(iso) {
    if (!iso) return "";
    var date = new Date(iso);
    if (isNaN(date.getTime())) return String(iso);
    try {
      timeFormat = timeFormat || new Intl.DateTimeFormat("zh-CN", {
        timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", hour12: false,
      });
      return timeFormat.format(date);
    } catch (e) {
      return date.toLocaleString();
    }
  }

  function pct(rate, whole) {
    if (typeof rate !== "number" || (whole !== undefined && !whole)) return "—";
    return (rate * 100).toFixed(1) + "%";
  }

  /* fetch + JSON; rejects with an Error whose message is readable (code: message). */
  function getJSON(url, options) {
    options = Object.assign({ credentials: "same-origin", headers: { Accept: "application/json" } }, options || {});
    return fetch(url, options).then(function (response) {
      if (response.status === 204) return null;
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!response.ok) {
          var err = new Error(describeError(response.status, data));
          err.status = response.status;
          err.code = data && data.error ? data.error.code : null;
          // the request's field or parameter at fault (a form names it by its label)
          err.field = data && data.error ? data.error.field || data.error.parameter || null : null;
          throw err;
        }
        return data;
      });
    });
  }

  function describeError(status, data) {
    // message_zh: the server's message in Chinese (the English `message` when it has none)
    if (data && data.error) return (data.error.message_zh || data.error.message) + "（" + data.error.code + "，HTTP " + status + "）";
    if (status === 404) return "接口不存在或未开放（HTTP 404）";
    return "请求失败（HTTP " + status + "）";
  }

  function query(params) {
    var parts = [];
    Object.keys(params).forEach(function (k) {
      var v = params[k];
      if (v === null || v === undefined || v === "") return;
      parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(v));
    });
    return parts.length ? "?" + parts.join("&") : "";
  }

  function showError(node, message) {
    if (!node) return;
    node.textContent = message || "";
    node.hidden = !message;
  }

  /* The public rating card (same shape as /api/v1/public/evaluations items). */
  function ratingCard(e, options) {
    options = options || {};
    var who = e.name_masked || (e.channel === "default" ? CHANNELS["default"] || "" : "匿名");
    var head = el(
      "div", { className: "card-head" },
      stars(e.overall),
      el("span", { className: "level-text level-" + e.overall, text: levelLabel(e.overall) }),
      el("span", { className: "who", text: who }),
      e.channel === "phone" || e.channel === "sms"
        ? el("span", { className: "tag", text: CHANNELS[e.channel] }) : null,
      el("time", { className: "time", datetime: e.created_at, text: fmtTime(e.created_at) })
    );
    var where = el("div", { className: "card-where" });
    if (e.item) append(where, el("span", { className: "item", text: e.item.name }));
    if (e.center) {
      var centerNode = options.linkCenter && e.center.code
        ? el("a", { href: "/public/" + query({ center: e.center.code }), text: e.center.name })
        : el("span", { text: e.center.name });
      append(where, el("span", { className: "center" }, centerNode));
    }
    if (e.window_staff && e.window_staff.name) {
      append(where, el("span", { className: "staff", text: "窗口人员：" + e.window_staff.name }));
    }
    var details = el("div", { className: "card-details" });
    Object.keys(e.stages || {}).forEach(function (k) {
      append(details, el("span", { className: "part", text: (STAGES[k] || k) + " " + levelLabel(e.stages[k]) }));
    });
    Object.keys(e.targets || {}).forEach(function (k) {
      append(details, el("span", { className: "part", text: (TARGETS[k] || k) + " " + levelLabel(e.targets[k]) }));
    });
    (e.indicators || []).forEach(function (ind) {
      append(details, el("span", { className: "indicator", text: ind.label || ind.code }));
    });
    var card = el(
      "li", { className: "card" + (isBad(e.overall) ? " is-bad" : ""), dataset: { id: e.id } },
      head, where,
      details.firstChild ? details : null,
      e.comment ? el("p", { className: "comment", text: e.comment }) : null
    );
    if (e.follow_up) {
      append(card, el(
        "div", { className: "follow-up" },
        el("span", { className: "follow-label", text: "追评" }),
        stars(e.follow_up.overall),
        el("span", { className: "level-text", text: levelLabel(e.follow_up.overall) }),
        el("time", { className: "time", text: fmtTime(e.follow_up.created_at) }),
        e.follow_up.comment ? el("p", { className: "comment", text: e.follow_up.comment }) : null
      ));
    }
    (e.replies || []).forEach(function (r) {
      append(card, el(
        "div", { className: "reply" },
        el("span", { className: "reply-label", text: "中心回复" }),
        el("span", { className: "reply-text", text: r.text }),
        el("time", { className: "time", text: fmtTime(r.created_at) })
      ));
    });
    var foot = el("div", { className: "card-foot" });
    var likes = Number(e.like_count) || 0;
    append(foot, el("span", { className: "likes", text: "赞 " + likes }));
    if (likes && e.likers && e.likers.length) {
      var names = e.likers.join("、");
      append(foot, el("span", { className: "likers", text: names + (likes > e.likers.length ? " 等 " + likes + " 人赞了" : " 赞了") }));
    }
    if (e.ticket_status) {
      append(foot, el("span", { className: "ticket ticket-" + e.ticket_status, text: "差评处理：" + (TICKET_STATUS[e.ticket_status] || e.ticket_status) }));
    }
    append(card, foot);
    return card;
  }

  /* A live stream (EventSource) with a status line; onRating(shape) per event. The stream is
   * closed when the page is hidden for navigation (pagehide) so a page kept in the browser's
   * back/forward cache holds no server connection, and reopened when it is shown again.
   * Ratings published while no stream was open (the browser reconnecting after a drop or a
   * server restart, the page back from the cache) never arrive on the stream: onReconnect()
   * runs each time a stream opens again, so the page can fetch what it missed. */
  function live(url, statusNode, onRating, onReconnect) {
    if (!window.EventSource) {
      if (statusNode) { statusNode.dataset.state = "off"; statusNode.textContent = "浏览器不支持实时更新"; }
      return null;
    }
    var source = null;
    function status(state, text) {
      if (!statusNode) return;
      statusNode.dataset.state = state;
      statusNode.textContent = text;
    }
    var opened = false;
    function connect() {
      source = new EventSource(url);
      source.onopen = function () {
        status("on", "实时更新中");
        if (opened && onReconnect) onReconnect();
        opened = true;
      };
      source.onerror = function () {
        status("off", source.readyState === EventSource.CLOSED ? "实时连接已断开，请刷新页面" : "连接中断，正在重连…");
      };
      source.onmessage = function (event) {
        var shape;
        try { shape = JSON.parse(event.data); } catch (e) { return; }
        if (shape && shape.id) onRating(shape);
      };
    }
    window.addEventListener("pagehide", function () {
      if (source) { source.close(); source = null; }
    });
    window.addEventListener("pageshow", function (event) {
      if (event.persisted && !source) { status("connecting", "正在连接…"); connect(); }
    });
    connect();
    return { close: function () { if (source) source.close(); source = null; } };
  }

  /* Put a card first, or replace the card of the same rating where it is (a follow-up). */
  function upsertCard(list, card, max) {
    var id = card.dataset.id;
    var existing = null;
    Array.prototype.forEach.call(list.children, function (child) {
      if (child.dataset.id === id) existing = child;
    });
    if (existing) {
      list.replaceChild(card, existing);
      return false;
    }
    card.classList.add("is-new");
    list.insertBefore(card, list.firstChild);
    if (max) while (list.children.length > max) list.removeChild(list.lastChild);
    return true;
  }

  /* Resolves once the labels are loaded (labels then fall back to the numbers and codes if
   * the request failed: a page still works). */
  var ready = getJSON("/api/v1/public/levels").then(fillLabels).catch(function () {});

  return {
    LEVELS: LEVELS, LEVEL_ORDER: LEVEL_ORDER, STAGES: STAGES, TARGETS: TARGETS,
    TICKET_STATUS: TICKET_STATUS, COMMENT_STATUS: COMMENT_STATUS, CHANNELS: CHANNELS, ready: ready, isBad: isBad,
    el: el, append: append, clear: clear, safeUrl: safeUrl, stars: stars, levelLabel: levelLabel,
    fmtTime: fmtTime, pct: pct, getJSON: getJSON, query: query, showError: showError,
    ratingCard: ratingCard, live: live, upsertCard: upsertCard,
  };
})();
