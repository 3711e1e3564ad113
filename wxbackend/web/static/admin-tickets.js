/* 差评工单: GET /admin/api/tickets?status=&overdue=, and the steps verify / rectify /
 * callback / close / appeal / appeal/decide (409 invalid_transition is shown as is);
 * 联系群众: POST /tickets/{id}/contact {reason} shows the applicant's phone (audited). */
"use strict";

(function () {
  var el = WXB.el;
  var A = ADMIN;
  var ACTIONS = [
    { path: "verify", label: "核实", permission: "tickets.work", states: ["open"], fields: [
      { name: "valid", label: "核实结果", type: "select", options: [["true", "差评属实"], ["false", "差评无效"]] },
      { name: "note", label: "核实说明", type: "textarea" },
    ], body: function (v) { return { valid: v.valid === "true", note: v.note || "" }; } },
    { path: "rectify", label: "整改反馈", permission: "tickets.work", states: ["verified"], fields: [
      { name: "note", label: "整改情况", type: "textarea", required: true },
    ], body: function (v) { return { note: v.note }; } },
    { path: "callback", label: "回访", permission: "tickets.work", states: ["rectified"], fields: [
      { name: "channel", label: "回访方式", type: "select", options: [["phone", "电话"], ["sms", "短信"], ["wechat", "微信"]] },
      { name: "satisfied", label: "群众是否满意", type: "select", options: [["true", "满意"], ["false", "不满意（退回重新整改）"]] },
      { name: "note", label: "回访记录", type: "textarea" },
    ], body: function (v) { return { channel: v.channel, satisfied: v.satisfied === "true", note: v.note || "" }; } },
    { path: "close", label: "办结", permission: "tickets.work", states: ["called_back"], fields: [
      { name: "note", label: "办结说明", type: "textarea" },
    ], body: function (v) { return v.note ? { note: v.note } : {}; } },
    { path: "appeal", label: "申诉", permission: "tickets.appeal", states: ["open", "verified"], fields: [
      { name: "reason", label: "申诉理由（恶意或误评）", type: "textarea", required: true },
    ], body: function (v) { return { reason: v.reason }; } },
    { path: "appeal/decide", label: "申诉裁决", permission: "tickets.decide_appeal", appeal: true, fields: [
      { name: "upheld", label: "裁决", type: "select", options: [["true", "申诉成立（差评无效，不计入人员统计）"], ["false", "申诉不成立"]] },
      { name: "note", label: "裁决说明", type: "textarea" },
    ], body: function (v) { return { upheld: v.upheld === "true", note: v.note || "" }; } },
  ];
  var ENDED = ["closed", "invalid"];
  var APPEAL = { pending: "申诉待裁决", upheld: "申诉成立", rejected: "申诉不成立" };

  function due(iso, overdue) {
    return el("span", { className: overdue ? "overdue" : null, text: WXB.fmtTime(iso) });
  }

  function history(ticket) {
    return el("ol", { className: "history" }, (ticket.history || []).map(function (h) {
      return el("li", null,
        el("time", { text: WXB.fmtTime(h.at) }), " ",
        el("strong", { text: WXB.TICKET_STATUS[h.status] || h.status || "" }),
        h.action ? " · " + h.action : "",
        h.by ? " · " + h.by : "",
        h.note ? el("div", { className: "note", text: h.note }) : null);
    }));
  }

  /* The row's action buttons; a click opens that step's form below the buttons. */
  function actions(ticket, reload) {
    var box = el("div", { className: "actions" });
    var formHolder = el("div");
    var shown = null;
    ACTIONS.forEach(function (action) {
      if (!A.can(action.permission)) return;
      if (action.appeal ? ticket.appeal_status !== "pending" : action.states.indexOf(ticket.status) < 0) return;
      box.appendChild(A.button(action.label, function () {
        WXB.clear(formHolder);
        if (shown === action) { shown = null; return; }
        shown = action;
        formHolder.appendChild(A.form(action.fields, "提交" + action.label, function (values) {
          return A.api("POST", "/tickets/" + encodeURIComponent(ticket.id) + "/" + action.path, action.body(values))
            .then(function () { window.setTimeout(reload, 600); return action.label + "已提交。"; });
        }));
      }));
    });
    if (A.can("tickets.contact") && ENDED.indexOf(ticket.status) < 0) {
      box.appendChild(A.button("联系群众", function () {
        WXB.clear(formHolder);
        if (shown === "contact") { shown = null; return; }
        shown = "contact";
        formHolder.appendChild(A.form([
          { name: "reason", label: "查看电话的事由（记入审计日志）", type: "textarea", required: true, maxlength: 500 },
        ], "查看群众电话", function (v) {
          return A.api("POST", "/tickets/" + encodeURIComponent(ticket.id) + "/contact", { reason: v.reason })
            .then(function (r) { return r.phone ? "群众电话：" + r.phone : "该办件未登记联系电话。"; });
        }));
      }));
    }
    var hist = el("div", { hidden: true }, history(ticket));
    box.appendChild(A.button("处理记录", function () { hist.hidden = !hist.hidden; }));
    return el("div", null, box, formHolder, hist);
  }

  function render(content) {
    content.appendChild(A.heading("差评工单", "每条差评自动生成工单：1 个工作日内核实，15 个工作日内整改反馈，回访后办结；期限不因任何操作暂停。"));
    var statuses = [["", "全部状态"]].concat(Object.keys(WXB.TICKET_STATUS).map(function (k) { return [k, WXB.TICKET_STATUS[k]]; }));
    var listBody = el("div");
    var filters = { status: "", overdue: "" };
    content.appendChild(A.form([
      { name: "status", label: "状态", type: "select", options: statuses },
      { name: "overdue", label: "仅看逾期", type: "checkbox" },
    ], "筛选", function (v) {
      filters = { status: v.status || "", overdue: v.overdue ? "true" : "" };
      reload();
      return "";
    }, { inline: true }));
    content.appendChild(listBody);

    function reload() {
      A.pagedTable(WXB.clear(listBody), [
        { label: "工单", key: "id" },
        { label: "办件编号", key: "case_no" },
        { label: "评价", key: "evaluation_id" },
        { label: "状态", value: function (t) { return el("span", { className: "ticket ticket-" + t.status, text: WXB.TICKET_STATUS[t.status] || t.status }); } },
        { label: "核实期限", value: function (t) { return due(t.verify_due, t.overdue && t.status === "open"); } },
        { label: "整改期限", value: function (t) { return due(t.rectify_due, t.overdue); } },
        { label: "逾期", value: function (t) { return t.overdue ? el("span", { className: "overdue", text: "已逾期" }) : "否"; } },
        { label: "申诉", value: function (t) { return t.appeal_status ? APPEAL[t.appeal_status] || t.appeal_status : null; } },
        { label: "操作", value: function (t) { return actions(t, reload); } },
      ], function (cursor) {
        return A.api("GET", "/tickets", null, { status: filters.status, overdue: filters.overdue, cursor: cursor });
      });
    }
    reload();
  }

  A.section({ id: "tickets", label: "差评工单", permission: "tickets.read", render: render });
})();
