/* 管理后台 core: the admin API client (cookie session + X-XSRFToken), login, navigation, and
 * small UI builders (tables, forms, paged lists) the section files use.
 *
 * What the caller may do comes from GET /admin/api/me (`permissions`, the actions of the
 * server's permission table): sections and buttons ask ADMIN.can("tickets.work"); the console
 * never names a role.
 *
 * The session is the HttpOnly cookie set by POST /admin/api/login; the token in its answer is
 * deliberately not kept. Writes echo the _xsrf cookie in X-XSRFToken. Sections register with
 * ADMIN.section({...}) from their own files; admin-start.js starts the console. */
"use strict";

var ADMIN = (function () {
  var el = WXB.el;
  var $ = function (id) { return document.getElementById(id); };
  var sections = [];
  var me = null;

  function xsrf() {
    var match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    return match ? match[1] : "";
  }

  /* api("GET", "/centers", null, {cursor: c}) → the JSON answer; rejects with a readable Error. */
  function api(method, path, body, params) {
    var headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-XSRFToken"] = xsrf();
    if (body !== null && body !== undefined) headers["Content-Type"] = "application/json";
    return WXB.getJSON("/admin/api" + path + WXB.query(params || {}), {
      method: method,
      headers: headers,
      body: body !== null && body !== undefined ? JSON.stringify(body) : (method === "GET" ? undefined : ""),
    }).catch(function (err) {
      if (err.status === 401 && path !== "/login") showLogin("登录已失效，请重新登录。");
      if (err.status === 403 && err.code === "forbidden") err.message = "当前账号无权执行此操作。" + err.message;
      throw err;
    });
  }

  /* can("tickets.work"): may the caller do this action somewhere in their reach? */
  function can(action) {
    return Boolean(me && (me.permissions || []).indexOf(action) >= 0);
  }

  /* The role with its label of a role code (from /me's roles). */
  function roleLabel(role) {
    var found = ((me && me.roles) || []).filter(function (r) { return r.role === role; })[0];
    return found ? found.label : role;
  }

  // ---- UI builders -----------------------------------------------------------------------

  function status() {
    return el("p", { className: "status", hidden: true });
  }

  function say(node, message, isError) {
    node.textContent = message || "";
    node.hidden = !message;
    node.className = "status" + (isError ? " error" : " ok");
  }

  function cellValue(value) {
    if (value === null || value === undefined || value === "") return "—";
    if (value instanceof Node) return value;
    if (typeof value === "boolean") return value ? "是" : "否";
    if (Array.isArray(value)) return value.map(function (v) { return typeof v === "object" ? JSON.stringify(v) : String(v); }).join("、");
    if (typeof value === "object") {
      if (value.name && value.code) return value.name + "（" + value.code + "）";
      if (value.name) return value.name;
      return JSON.stringify(value);
    }
    return String(value);
  }

  /* columns: [{label, key} | {label, value: row => text|Node}] */
  function table(columns, rows) {
    var thead = el("thead", null, el("tr", null, columns.map(function (c) { return el("th", { text: c.label }); })));
    var tbody = el("tbody");
    rows.forEach(function (row) { appendRows(tbody, columns, [row]); });
    return el("div", { className: "table-wrap" }, el("table", { className: "data" }, thead, tbody));
  }

  function appendRows(tbody, columns, rows) {
    rows.forEach(function (row) {
      tbody.appendChild(el("tr", null, columns.map(function (c) {
        var value = c.value ? c.value(row) : row[c.key];
        return el("td", null, cellValue(value));
      })));
    });
  }

  /* fields: [{name, label, type: text|password|number|date|month|select|checkbox|textarea,
   *           options: [[value, label]], multiple (a select's value is then an array),
   *           required, placeholder, value}]
   * onSubmit(values) returns a promise; its error is shown under the form. */
  function form(fields, submitLabel, onSubmit, options) {
    options = options || {};
    var note = status();
    var node = el("form", { className: "form" + (options.inline ? " inline" : "") });
    fields.forEach(function (f) {
      var input;
      if (f.type === "select") {
        input = el("select", { name: f.name, multiple: f.multiple ? "multiple" : null, size: f.multiple ? Math.min(8, (f.options || []).length) || 1 : null }, (f.options || []).map(function (o) {
          return el("option", { value: o[0], text: o[1] });
        }));
        if (f.value !== undefined) input.value = f.value;
      } else if (f.type === "textarea") {
        input = el("textarea", { name: f.name, rows: 3, maxlength: f.maxlength || 1000, placeholder: f.placeholder, required: f.required });
        if (f.value) input.value = f.value;
      } else {
        input = el("input", {
          name: f.name, type: f.type || "text", placeholder: f.placeholder, required: f.required,
          maxlength: f.type === "checkbox" || f.type === "number" ? null : (f.maxlength || 200),
          min: f.min, max: f.max, autocomplete: f.type === "password" ? "new-password" : "off",
        });
        if (f.type === "checkbox") input.checked = Boolean(f.value);
        else if (f.value !== undefined && f.value !== null) input.value = f.value;
      }
      node.appendChild(el("label", { className: f.type === "checkbox" ? "check" : null }, f.label, input));
    });
    var button = el("button", { type: "submit", className: "button primary", text: submitLabel });
    node.appendChild(button);
    node.appendChild(note);
    node.onsubmit = function (event) {
      event.preventDefault();
      var values = {};
      fields.forEach(function (f) {
        var input = node.elements[f.name];
        if (f.type === "checkbox") values[f.name] = input.checked;
        else if (f.multiple) values[f.name] = Array.prototype.map.call(input.selectedOptions, function (o) { return o.value; });
        else if (f.type === "number") { if (input.value !== "") values[f.name] = Number(input.value); }
        else if (input.value !== "") values[f.name] = input.value;
      });
      button.disabled = true;
      say(note, "处理中…");
      Promise.resolve().then(function () { return onSubmit(values, node); }).then(function (message) {
        say(note, typeof message === "string" ? message : "已完成。");
        if (options.reset) node.reset();
      }, function (err) {
        say(note, faultyField(fields, err) + err.message, true);
      }).then(function () { button.disabled = false; });
    };
    return node;
  }

  /* "行政区划代码：" when a refusal names a field of the form (its label without the hint in
   * brackets), "字段 code：" for another field, "" when it names none. */
  function faultyField(fields, err) {
    if (!err.field) return "";
    var field = fields.filter(function (f) { return f.name === err.field; })[0];
    return field ? String(field.label).split("（")[0].trim() + "：" : "字段 " + err.field + "：";
  }

  /* A list with "加载更多": load(cursor) → {items, next_cursor}. */
  function pagedTable(container, columns, load) {
    var wrap = el("div");
    var note = status();
    var more = el("button", { type: "button", className: "button", text: "加载更多", hidden: true });
    var tbody = null;
    var cursor = null;
    container.appendChild(wrap);
    container.appendChild(note);
    container.appendChild(more);
    function next() {
      more.disabled = true;
      return load(cursor).then(function (page) {
        var items = page.items || [];
        if (!tbody) {
          var t = table(columns, []);
          tbody = t.querySelector("tbody");
          WXB.clear(wrap).appendChild(t);
        }
        appendRows(tbody, columns, items);
        cursor = page.next_cursor || null;
        more.hidden = !cursor;
        say(note, tbody.children.length ? "" : "没有记录。");
      }).catch(function (err) {
        say(note, "加载失败：" + err.message, true);
      }).then(function () { more.disabled = false; });
    }
    more.onclick = next;
    return next();
  }

  function heading(text, sub) {
    return el("div", { className: "section-head" }, el("h2", { text: text }), sub ? el("p", { className: "hint", text: sub }) : null);
  }

  function box(title) {
    var node = el("section", { className: "box" }, el("h3", { text: title }));
    return node;
  }

  function button(text, onclick, cls) {
    return el("button", { type: "button", className: "button small " + (cls || ""), text: text, onclick: onclick });
  }

  // ---- navigation ------------------------------------------------------------------------

  function section(spec) {
    sections.push(spec);
  }

  function visibleSections() {
    return sections.filter(function (s) { return !s.permission || can(s.permission); });
  }

  function open(id) {
    var list = visibleSections();
    var spec = list.filter(function (s) { return s.id === id; })[0] || list[0];
    if (!spec) return;
    Array.prototype.forEach.call($("nav").children, function (b) {
      b.classList.toggle("active", b.dataset.section === spec.id);
    });
    var content = WXB.clear($("content"));
    try {
      spec.render(content);
    } catch (err) {
      content.appendChild(el("p", { className: "error", text: "页面出错：" + err.message }));
    }
    if (window.location.hash !== "#" + spec.id) history.replaceState(null, "", "#" + spec.id);
  }

  function showConsole(who) {
    me = who;
    $("login-view").hidden = true;
    $("console-view").hidden = false;
    $("who").hidden = false;
    $("who-name").textContent = who.username + "（" + (who.role_label || who.role) + "）";
    var nav = WXB.clear($("nav"));
    visibleSections().forEach(function (s) {
      nav.appendChild(el("button", { type: "button", className: "nav-item", dataset: { section: s.id }, text: s.label, onclick: function () { open(s.id); } }));
    });
    open(window.location.hash.slice(1));
  }

  function showLogin(message) {
    me = null;
    $("console-view").hidden = true;
    $("who").hidden = true;
    $("login-view").hidden = false;
    WXB.showError($("login-error"), message || "");
  }

  function start() {
    $("login-form").onsubmit = function (event) {
      event.preventDefault();
      var f = event.target;
      var body = { username: f.elements.username.value, password: f.elements.password.value };
      api("POST", "/login", body).then(function () {
        f.elements.password.value = "";
        return api("GET", "/me");
      }).then(showConsole).catch(function (err) {
        var text = err.code === "bad_credentials" ? "用户名或密码错误。"
          : err.code === "locked" ? "失败次数过多，该账号已暂时锁定，请 15 分钟后再试。"
          : "登录失败：" + err.message;
        WXB.showError($("login-error"), text);
      });
    };
    $("logout").onclick = function () {
      api("POST", "/logout", {}).catch(function () { return null; }).then(function () { showLogin("已退出登录。"); });
    };
    window.addEventListener("hashchange", function () { if (me) open(window.location.hash.slice(1)); });
    // data-session: the page was served with a session cookie (HttpOnly: not readable here)
    if (document.body.dataset.session) api("GET", "/me").then(showConsole).catch(function () { showLogin(""); });
    else showLogin("");
  }

  return {
    api: api, can: can, me: function () { return me; }, section: section, start: start,
    table: table, form: form, pagedTable: pagedTable, heading: heading, box: box, button: button,
    status: status, say: say, cellValue: cellValue, roleLabel: roleLabel,
  };
})();
