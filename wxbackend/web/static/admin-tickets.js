/* 差评工单: GET /admin/api/tickets?status=&overdue= (each row with its rating: item, stars,
 * reasons, comment, staff), and the steps verify / rectify /
 * callback / close / appeal / appeal/decide / invalidation/decide (a second admin confirms
 * a proposal to declare a 差评 invalid; 409 invalid_transition is shown as is);
 * 联系群众: POST /tickets/{id}/contact {reason} shows the applicant's phone (audited). */
"use strict";

(function () {
  var el = WXB.el;
  var A = ADMIN;
  var ACTIONS = [
    { path: "verify", label: "核实", permission: "tickets.work", states: ["open"], fields: [
      { name: "valid", label: "核实结果", type: "select", options: [["true", "差评属实"], ["false", "差评无效（需另一名管理员确认）"]] },
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
    { path: "invalidation/decide", label: "无效差评确认", permission: "tickets.decide_invalid", proposal: true, fields: [
      { name: "confirm", label: "确认结果", type: "select", options: [["true", "确认差评无效"], ["false", "驳回，继续核实"]] },
      { name: "note", label: "说明", type: "textarea" },
    ], body: function (v) { return { confirm: v.confirm === "true", note: v.note || "" }; } },
  ];
  var ENDED = ["closed", "invalid"];
  var STEP_LABELS = {
    open: "生成工单", verify: "核实属实", propose_invalid: "提出无效差评", invalidated: "确认无效差评",
    invalid_rejected: "驳回无效差评", rectify: "整改反馈", callback_phone: "电话回访",
    callback_sms: "短信回访", callback_wechat: "微信回访", close: "办结", appeal: "提出申诉",
    appeal_upheld: "申诉成立", appeal_rejected: "申诉不成立",
  };

  /* Which step buttons a ticket shows: by state, a pending appeal or a pending proposal. */
  function applies(action, ticket) {
    if (action.appeal) return ticket.appeal_status === "pending";
    if (action.proposal) return ticket.status === "open" && Boolean(ticket.pending_invalidation);
    if (action.path === "verify" && ticket.pending_invalidation) return false;
    if (action.path === "appeal" && ticket.appeal_status) return false; // one appeal a ticket
    return action.states.indexOf(ticket.status) >= 0;
  }
  var APPEAL = { pending: "申诉待裁决", upheld: "申诉成立", rejected: "申诉不成立" };

  /* 窗口人员 / 审批人员 of the ticket's rating: "name（staff_no）". */
  function staffText(ticket) {
    var r = ticket.rating;
    if (!r) return null;
    var parts = [];
    if (r.window_staff) parts.push("窗口：" + r.window_staff.name + "（" + r.window_staff.staff_no + "）");
    if (r.approver) parts.push("审批：" + r.approver.name + "（" + r.approver.staff_no + "）");
    return parts.join("；") || null;
  }

  function due(iso, overdue) {
    return el("span", { className: overdue ? "overdue" : null, text: WXB.fmtTime(iso) });
  }

  function history(ticket) {
    return el("ol", { className: "history" }, (ticket.history || []).map(function (h) {
      return el("li", null,
        el("time", { text: WXB.fmtTime(h.at) }), " ",
        el("strong", { text: WXB.TICKET_STATUS[h.status] || h.status || "" }),
        h.action ? " · " + (STEP_LABELS[h.action] || h.action) : "",
        h.by ? " · " + (h.by === "system" ? "系统" : h.by) : "",
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
      if (!applies(action, ticket)) return;
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
        { label: "事项", value: function (t) { return t.rating && t.rating.item ? t.rating.item.name : null; } },
        { label: "评价", value: function (t) {
          return t.rating ? el("span", { className: "nowrap" }, WXB.stars(t.rating.overall), " ", WXB.levelLabel(t.rating.overall)) : null;
        } },
        { label: "差评原因", value: function (t) {
          var reasons = t.rating ? t.rating.indicators || [] : [];
          return reasons.length ? el("span", null, reasons.map(function (r) { return el("span", { className: "tag", text: r.label || r.code }); })) : null;
        } },
        { label: "评价内容", value: function (t) {
          return t.rating && t.rating.comment ? el("p", { className: "comment", text: t.rating.comment }) : null;
        } },
        { label: "工作人员", value: staffText },
        { label: "状态", value: function (t) { return el("span", { className: "ticket ticket-" + t.status, text: WXB.TICKET_STATUS[t.status] || t.status }); } },
        { label: "核实期限", value: function (t) { return due(t.verify_due, t.overdue && t.status === "open"); } },
        { label: "整改期限", value: function (t) { return due(t.rectify_due, t.overdue); } },
        { label: "逾期", value: function (t) { return t.overdue ? el("span", { className: "overdue", text: "已逾期" }) : "否"; } },
        { label: "申诉", value: function (t) {
          if (t.pending_invalidation && t.status === "open") return "无效差评待确认（" + t.pending_invalidation.by + " 提出）";
          return t.appeal_status ? APPEAL[t.appeal_status] || t.appeal_status : null;
        } },
        { label: "操作", value: function (t) { return actions(t, reload); } },
      ], function (cursor) {
        return A.api("GET", "/tickets", null, { status: filters.status, overdue: filters.overdue, cursor: cursor });
      });
    }
    reload();
  }

  A.section({ id: "tickets", label: "差评工单", permission: "tickets.read", render: render });
})();
