/* 统计分析 (GET /admin/api/stats?group_by=, /staff-ranking?month=), 数据导出 (/export links).
 * 审计日志 is admin-audit.js. */
"use strict";

(function () {
  var el = WXB.el;
  var A = ADMIN;
  var GROUPS = [["center", "按中心"], ["item", "按事项"], ["department", "按部门"], ["staff", "按工作人员"], ["day", "按日期"]];

  function keyText(row) {
    var key = row.key || {};
    if (key.date) return key.date;
    var text = key.name ? key.name + (key.code || key.staff_no ? "（" + (key.code || key.staff_no) + "）" : "") : (key.code || key.staff_no || "—");
    if (key.role) text += key.role === "approver" ? " · 审批" : " · 窗口";
    return text;
  }

  /* A rate is a number or null (nothing to divide by): null shows "—". */
  function rate(name) {
    return function (row) { return WXB.pct(row[name]); };
  }

  /* product.md rule 10, the levels named as the server counts them. */
  function definitions() {
    var label = function (level) { return WXB.levelLabel(level); };
    var good = WXB.LEVEL_ORDER.filter(function (level) { return !WXB.isBad(level); }).map(label).join("、");
    var bad = WXB.LEVEL_ORDER.filter(WXB.isBad).map(label).join("、");
    return "按办结日期选取办件，统计其首次评价（不含追评）。满意率 =（" + good + "）÷ 已评价办件（含系统默认评价）；" +
      "差评率 =（" + bad + "）÷ 已评价办件；主动评价率 = 群众自行评价（扫码、小程序）的办件 ÷ 已办结办件；" +
      "主动评价好评率 = 群众自行评价中的满意 ÷ 群众自行评价；未评价率 = 既无群众评价也无回访评价的办件（默认评价视为未评价）÷ 已办结办件；" +
      "按时整改率 = 期限内整改的差评工单 ÷ 整改期限落在所选范围内的差评工单。分母为 0 时显示“—”。";
  }

  /* Today in Beijing time as YYYY-MM-DD (the figures' days are Asia/Shanghai days). */
  function beijingToday() {
    return new Date(Date.now() + 8 * 3600 * 1000).toISOString().slice(0, 10);
  }

  var RANKING_INTRO = "综合得分兼顾平均星级、评价数量和差评：评价少的人向本中心平均水平靠拢，" +
    "一两条评价不会决定名次；每条差评再扣分。得分高者在前，同分时评价多者在前。详细公式见查询结果上方。";

  function renderStats(content) {
    content.appendChild(A.heading("统计分析", definitions()));
    var out = el("div");
    var today = beijingToday();
    var statsForm = A.form([
      { name: "group_by", label: "分组", type: "select", options: GROUPS },
      { name: "from", label: "开始日期", type: "date", value: today.slice(0, 8) + "01" },
      { name: "to", label: "结束日期", type: "date", value: today },
      { name: "center", label: "中心编码", maxlength: 64 },
    ], "统计", function (v) {
      WXB.clear(out).appendChild(el("p", { className: "hint", text: "统计中…" }));
      return A.api("GET", "/stats", null, v).then(function (answer) {
        var columns = [{ label: "分组", value: keyText }, { label: "办结数", key: "finished_cases" }, { label: "评价数", key: "total" }];
        WXB.LEVEL_ORDER.forEach(function (n) {
          columns.push({ label: WXB.levelLabel(n), value: function (r) { return r.by_level ? r.by_level[String(n)] : null; } });
        });
        columns.push(
          { label: "满意率", value: rate("satisfaction_rate") },
          { label: "差评率", value: rate("bad_rate") },
          { label: "主动评价率", value: rate("active_rate") },
          { label: "主动评价好评率", value: rate("active_good_rate") },
          { label: "未评价率", value: rate("unrated_rate") },
          { label: "按时整改率", value: rate("on_time_rectification_rate") },
          { label: "追评数", key: "follow_ups" }
        );
        WXB.clear(out).appendChild(A.table(columns, answer.rows || []));
        return (answer.rows || []).length ? "" : "所选范围内没有数据。";
      }, function (err) { WXB.clear(out); throw err; });
    }, { inline: true });
    content.appendChild(statsForm);
    content.appendChild(out);

    var ranking = A.box("工作人员月度排名（窗口人员、审批人员分别排名）");
    var rankOut = el("div");
    var month = today.slice(0, 7);
    ranking.appendChild(el("p", { className: "hint", text: RANKING_INTRO }));
    var rankForm = A.form([{ name: "month", label: "月份", type: "month", value: month, required: true }], "查询", function (v) {
      return A.api("GET", "/staff-ranking", null, { month: v.month }).then(function (answer) {
        WXB.clear(rankOut);
        var method = answer.method_zh || answer.method;
        if (method) rankOut.appendChild(el("p", { className: "hint ranking-method", text: "排名方法：" + method }));
        rankOut.appendChild(A.table([
          { label: "名次", key: "rank" },
          { label: "岗位", value: function (r) { return r.role === "approver" ? "审批人员" : "窗口人员"; } },
          { label: "工作人员", value: function (r) { return r.staff ? r.staff.name + "（" + r.staff.staff_no + "）" : null; } },
          { label: "中心", value: function (r) { return r.staff && r.staff.center ? r.staff.center.name : null; } },
          { label: "部门", value: function (r) { return r.staff && r.staff.department ? r.staff.department.name : null; } },
          { label: "评价数", key: "ratings" },
          { label: "评了本岗位", key: "target_rated" },
          { label: "平均星级", value: function (r) { return typeof r.mean === "number" ? r.mean.toFixed(2) : r.mean; } },
          { label: "差评", key: "bad" },
          { label: "综合得分", value: function (r) { return typeof r.score === "number" ? r.score.toFixed(3) : r.score; } },
        ], answer.items || []));
        return (answer.items || []).length ? "" : "该月没有可排名的评价。";
      });
    }, { inline: true });
    ranking.appendChild(rankForm);
    ranking.appendChild(rankOut);
    content.appendChild(ranking);
    // the view opens with this month's figures and ranking
    statsForm.requestSubmit();
    rankForm.requestSubmit();
  }

  function renderExport(content) {
    content.appendChild(A.heading("数据导出", "按省级平台上报字段导出评价（地区与部门编码、事项编码、办件编号、渠道、等级、指标、内容、时间、评价次数、窗口与审批人员）。每次导出记入审计日志。"));
    var links = el("p", { className: "export-links" });
    function update(v) {
      WXB.clear(links);
      [["csv", "下载 CSV"], ["jsonl", "下载 JSONL"]].forEach(function (f) {
        var href = "/admin/api/export" + WXB.query({ from: v.from, to: v.to, format: f[0] });
        links.appendChild(el("a", { className: "button primary", href: href, download: "", text: f[1] }));
        links.appendChild(document.createTextNode(" "));
      });
    }
    content.appendChild(A.form([
      { name: "from", label: "开始日期", type: "date" },
      { name: "to", label: "结束日期", type: "date" },
    ], "生成下载链接", function (v) { update(v); return "请点击下方链接下载。"; }, { inline: true }));
    content.appendChild(links);
    update({});
  }

  A.section({ id: "stats", label: "统计分析", permission: "stats.read", render: renderStats });
  A.section({ id: "export", label: "数据导出", permission: "export", render: renderExport });
})();
