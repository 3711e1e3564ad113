/* 评价管理: GET /admin/api/evaluations (filters, cursor), reply, moderate, reveal (audited),
 * and POST /admin/api/callback-evaluations (回访评价 taken by phone / SMS); each shown only
 * with its permission from /admin/api/me. */
"use strict";

(function () {
  var el = WXB.el;
  var A = ADMIN;
  var COMMENT_STATUS = WXB.COMMENT_STATUS;
  function levelOptions() {
    return WXB.LEVEL_ORDER.map(function (n) { return [String(n), n + " " + WXB.levelLabel(n)]; });
  }

  function name(value) {
    if (!value) return null;
    return typeof value === "object" ? value.name || value.code : String(value);
  }

  function commentCell(e) {
    return el("div", null,
      e.comment ? el("p", { className: "comment", text: e.comment }) : el("span", { className: "hint", text: "（无文字）" }),
      el("span", { className: "tag status-" + e.comment_status, text: COMMENT_STATUS[e.comment_status] || e.comment_status || "" }),
      e.moderation_reason ? el("span", { className: "hint", text: " 处理原因：" + e.moderation_reason }) : null,
      (e.replies || []).map(function (r) {
        return el("div", { className: "reply" }, el("span", { className: "reply-label", text: "回复" }), el("span", { text: r.text }), el("time", { className: "time", text: WXB.fmtTime(r.created_at) }));
      }));
  }

  function actions(e, reload) {
    var holder = el("div");
    var box = el("div", { className: "actions" });
    var shown = null;
    function toggle(key, build) {
      WXB.clear(holder);
      if (shown === key) { shown = null; return; }
      shown = key;
      holder.appendChild(build());
    }
    var path = "/evaluations/" + encodeURIComponent(e.id);
    if (A.can("evaluations.reply")) {
      box.appendChild(A.button("公开回复", function () {
        toggle("reply", function () {
          return A.form([{ name: "text", label: "回复内容（将公开显示）", type: "textarea", required: true, maxlength: 500 }], "发布回复", function (v) {
            return A.api("POST", path + "/reply", { text: v.text }).then(function () { window.setTimeout(reload, 600); return "已回复。"; });
          });
        });
      }));
    }
    if (A.can("evaluations.moderate")) {
      var hide = e.comment_status !== "hidden";
      box.appendChild(A.button(hide ? "隐藏评论" : "恢复显示", function () {
        toggle("moderate", function () {
          return A.form([{ name: "reason", label: hide ? "隐藏原因（必填）" : "说明", required: hide, maxlength: 200 }], hide ? "确认隐藏" : "确认显示", function (v) {
            return A.api("POST", path + "/moderate", { visible: !hide, reason: v.reason || null }).then(function () { window.setTimeout(reload, 600); return "已处理。"; });
          });
        });
      }));
    }
    if (A.can("evaluations.reveal") && e.channel !== "default") {
      var revealed = el("span", { className: "revealed" });
      box.appendChild(A.button("查看实名", function () {
        toggle("reveal", function () {
          return A.form([{ name: "reason", label: "查看实名的事由（必填，记入审计日志）", type: "textarea", required: true, maxlength: 500 }], "查看实名", function (v) {
            return A.api("POST", path + "/reveal", { reason: v.reason }).then(function (r) {
              revealed.textContent = "实名：" + r.name;
              return "已记入审计日志。";
            });
          });
        });
      }));
      box.appendChild(revealed);
    }
    return el("div", null, box, holder);
  }

  function render(content) {
    content.appendChild(A.heading("评价管理", "查看全部评价（含待审核、已隐藏的评论）、公开回复、审核评论；查看实名记入审计日志。"));
    var channels = [["", "全部渠道"]].concat(Object.keys(WXB.CHANNELS).map(function (k) { return [k, WXB.CHANNELS[k]]; }));
    var statuses = [["", "全部评论状态"]].concat(Object.keys(COMMENT_STATUS).map(function (k) { return [k, COMMENT_STATUS[k]]; }));
    var filters = {};
    var listBody = el("div");
    content.appendChild(A.form([
      { name: "center", label: "中心编码", maxlength: 64 },
      { name: "item", label: "事项编码", maxlength: 64 },
      { name: "staff", label: "工号", maxlength: 64 },
      { name: "level", label: "等级", type: "select", options: [["", "全部等级"]].concat(levelOptions()) },
      { name: "channel", label: "渠道", type: "select", options: channels },
      { name: "comment_status", label: "评论状态", type: "select", options: statuses },
      { name: "from", label: "开始日期", type: "date" },
      { name: "to", label: "结束日期", type: "date" },
    ], "筛选", function (v) { filters = v; reload(); return ""; }, { inline: true }));
    content.appendChild(listBody);

    function reload() {
      A.pagedTable(WXB.clear(listBody), [
        { label: "编号", key: "id" },
        { label: "时间", value: function (e) { return WXB.fmtTime(e.created_at); } },
        { label: "办件", value: function (e) { return e.case_no; } },
        { label: "中心 / 事项", value: function (e) { return [name(e.center), name(e.item)].filter(Boolean).join(" · "); } },
        { label: "窗口人员", value: function (e) { return name(e.window_staff); } },
        { label: "评价", value: function (e) {
          return el("span", { className: "nowrap" }, WXB.stars(e.overall), " ", WXB.levelLabel(e.overall), e.assess_number === 2 ? " · 追评" : "");
        } },
        { label: "评价人", value: function (e) { return e.name_masked; } },
        { label: "渠道", value: function (e) { return WXB.CHANNELS[e.channel] || e.channel; } },
        { label: "评论", value: commentCell },
        { label: "工单", value: function (e) { var s = e.ticket_status || (e.ticket && e.ticket.status); return s ? WXB.TICKET_STATUS[s] || s : null; } },
        { label: "操作", value: function (e) { return actions(e, reload); } },
      ], function (cursor) {
        return A.api("GET", "/evaluations", null, Object.assign({}, filters, { cursor: cursor }));
      });
    }
    reload();

    if (A.can("callback.record")) {
      var callback = A.box("录入回访评价（电话 / 短信）");
      callback.appendChild(el("p", { className: "hint", text: "仅用于群众尚未自行评价的办件，且须在办结 24 小时之后；会取代系统默认评价；差评将自动生成工单。差评需选择至少一项原因或填写评价内容（按住 Ctrl 可多选原因）。回访时间与通话记录或短信编号随评价保存。" }));
      content.appendChild(callback);
      var holder = el("p", { className: "hint", text: "正在加载评价原因…" });
      callback.appendChild(holder);
      WXB.getJSON("/api/v1/public/indicators").then(function (answer) {
        return (answer.items || []).map(function (i) { return [i.code, i.label]; });
      }).catch(function (err) {
        A.say(holder, "评价原因加载失败：" + err.message, true);
        return null;
      }).then(function (reasons) {
        if (reasons) callback.replaceChild(callbackForm(reasons, reload), holder);
      });
    }
  }

  /* The callback rating form; the reasons (指标) are picked from the catalogue's list. */
  function callbackForm(reasons, reload) {
    return A.form([
      { name: "case_no", label: "办件编号", required: true, maxlength: 64 },
      { name: "channel", label: "渠道", type: "select", options: [["phone", "电话回访"], ["sms", "短信回访"]] },
      { name: "overall", label: "总体评价", type: "select", options: levelOptions() },
      { name: "indicators", label: "评价原因（可多选）", type: "select", multiple: true, options: reasons },
      { name: "comment", label: "评价内容", type: "textarea", maxlength: 500 },
      { name: "contact_at", label: "回访时间", type: "datetime-local", required: true },
      { name: "reference", label: "通话记录或短信编号", required: true, maxlength: 64 },
    ], "录入", function (v) {
      var at = new Date(v.contact_at); // the browser's local time → an ISO time with offset
      if (isNaN(at.getTime())) return Promise.reject(new Error("请填写回访时间。"));
      var body = {
        case_no: v.case_no, channel: v.channel, overall: Number(v.overall), indicators: v.indicators || [],
        contact_at: at.toISOString(), reference: v.reference,
      };
      if (v.comment) body.comment = v.comment;
      return A.api("POST", "/callback-evaluations", body).then(function () { reload(); return "已录入。"; });
    }, { reset: true });
  }

  A.section({ id: "evaluations", label: "评价管理", permission: "evaluations.read", render: render });
})();
