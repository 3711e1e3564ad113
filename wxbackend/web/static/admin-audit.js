/* 审计日志 (GET /admin/api/audit-log): each entry's action, object and detail in words; the
 * codes (ticket.verify, ids) stay beside them for searching. */
"use strict";

(function () {
  var el = WXB.el;
  var A = ADMIN;

  var OBJECTS = {
    ticket: "工单", evaluation: "评价", evaluations: "评价", wechat_config: "微信配置", admin: "管理员",
    partner: "合作方密钥", center: "服务中心", department: "部门", item: "服务事项", staff: "工作人员",
    window: "窗口", catalog: "目录", "export": "导出", rollups: "统计汇总",
  };
  var VERBS = {
    create: "新增", update: "修改", "delete": "删除", verify: "核实", rectify: "整改反馈", callback: "回访",
    close: "办结", appeal: "申诉", appeal_decide: "申诉裁决", invalidation_decide: "无效差评确认",
    contact: "查看群众电话", moderate: "审核评论", reply: "公开回复", reveal: "查看实名", "export": "导出",
    disable: "停用", revoke: "吊销", deactivate: "停用", id_number: "登记身份证号", device_key: "生成设备密钥",
    "import": "导入", rebuild: "重建",
  };
  /* The detail's keys in words (a key not listed shows as it is: a code). */
  var KEYS = {
    from: "从", to: "到", valid: "差评属实", channel: "渠道", satisfied: "群众满意", upheld: "申诉成立",
    confirm: "确认无效", reason: "事由", note: "说明", case_id: "办件 ID", phone_known: "已登记电话",
    contact_reference: "通话记录或短信编号", overall: "总体评价", superseded_default: "取代系统默认评价",
    format: "格式", center_id: "中心 ID", department_id: "部门 ID", role: "角色", center: "中心",
    department: "部门", disabled: "停用", staff_no: "工号", values: "内容", changed: "修改", name: "名称",
    centers: "中心", counts: "数量", rows: "行数", reply_id: "回复编号", change: "变更",
    fingerprint: "指纹", windows_cleared: "解除绑定的窗口", generation: "密钥代次", id_number: "身份证号",
    wecom_webhook_key: "企业微信机器人", password: "密码", code: "编码", area_code: "行政区划代码",
    credit_code: "统一社会信用代码", photo_url: "照片地址", title: "职务", visible: "公开",
    window_code: "窗口", item: "事项", text: "内容", active: "在岗",
  };
  var NOTES = { set: "已设置", cleared: "已清除" };
  var STAFF_ROLES = { window: "窗口人员", approver: "审批人员" };

  /* One value of the detail in words: states, channels, roles, yes/no; codes as they are. */
  function valueText(key, value) {
    if (value === null || value === undefined || value === "") return "—";
    if (typeof value === "boolean") return value ? "是" : "否";
    if (Array.isArray(value)) {
      return value.map(function (v) { return key === "changed" ? fieldText(v) : valueText(key, v); }).join("、");
    }
    if (typeof value === "object") return detailText(value, key === "changed");
    if (key === "overall") return value + " " + WXB.levelLabel(value);
    if (key === "channel") return WXB.CHANNELS[value] || { wechat: "微信" }[value] || value;
    if (key === "role") return STAFF_ROLES[value] || A.roleLabel(value);
    var text = String(value);
    return WXB.TICKET_STATUS[text] || WXB.COMMENT_STATUS[text] || NOTES[text] || text;
  }

  /* A changed field's name: the configuration's label, else the detail's, else the code. */
  function fieldText(field) {
    return (A.configFieldNames || {})[field] || KEYS[field] || field;
  }

  /* {"from": "open", "to": "verified"} → "从：差评待核实；到：已核实，整改中". */
  function detailText(detail, changes) {
    return Object.keys(detail).map(function (key) {
      return (changes ? fieldText(key) : KEYS[key] || key) + "：" + valueText(key, detail[key]);
    }).join("；");
  }

  /* "工单 · 核实（ticket.verify）": the audit action in words, its code kept for searching. */
  function actionText(action) {
    var parts = String(action || "").split(".");
    var object = OBJECTS[parts[0]];
    var verb = VERBS[parts.slice(1).join(".")];
    return object && verb ? object + " · " + verb + "（" + action + "）" : action;
  }

  function detailCell(entry) {
    var detail = entry.detail;
    if (typeof detail === "string") {
      try { detail = JSON.parse(detail); } catch (e) { return el("span", { className: "detail", text: detail }); }
    }
    if (!detail || typeof detail !== "object" || !Object.keys(detail).length) return null;
    return el("span", { className: "detail", title: JSON.stringify(detail), text: detailText(detail, false) });
  }

  function renderAudit(content) {
    content.appendChild(A.heading("审计日志", "谁在何时、从何处做了什么。"));
    var out = el("div");
    var filters = {};
    content.appendChild(A.form([
      { name: "action", label: "操作代码（如 ticket.verify）", maxlength: 64 },
      { name: "username", label: "用户名", maxlength: 64 },
      { name: "from", label: "开始日期", type: "date" },
      { name: "to", label: "结束日期", type: "date" },
    ], "查询", function (v) { filters = v; reload(); return ""; }, { inline: true }));
    content.appendChild(out);
    function reload() {
      A.pagedTable(WXB.clear(out), [
        { label: "时间", value: function (r) { return WXB.fmtTime(r.at); } },
        { label: "用户", key: "username" },
        { label: "操作", value: function (r) { return actionText(r.action); } },
        { label: "对象", value: function (r) { return [OBJECTS[r.target_type] || r.target_type, r.target_id].filter(Boolean).join(" "); } },
        { label: "详情", value: detailCell },
        { label: "来源地址", key: "client_ip" },
      ], function (cursor) {
        return A.api("GET", "/audit-log", null, Object.assign({}, filters, { cursor: cursor }));
      });
    }
    reload();
  }

  A.section({ id: "audit", label: "审计日志", permission: "audit.read", render: renderAudit });
})();
