/* 微信配置: GET/PUT /admin/api/wechat-config, POST …/test, GET …/history. */
"use strict";

(function () {
  var el = WXB.el;
  var A = ADMIN;

  var LABELS = [
    ["appid", "AppID"], ["secret", "AppSecret"], ["push_token", "消息推送 Token"],
    ["aes_key", "EncodingAESKey"], ["api_base", "接口地址（只读）"], ["miniprogram_page", "评价页面路径"],
    ["env_version", "小程序版本"], ["check_path", "校验页面路径"], ["version", "配置版本"],
    ["updated_at", "更新时间"], ["updated_by", "更新人"],
  ];

  var ENV_VERSIONS = { release: "正式版", trial: "体验版", develop: "开发版" };

  function current(box) {
    var holder = el("div", null, el("p", { className: "hint", text: "加载中…" }));
    box.appendChild(holder);
    return A.api("GET", "/wechat-config").then(function (cfg) {
      var rows = LABELS.map(function (l) {
        var v = cfg[l[0]];
        if (l[0] === "updated_at") v = WXB.fmtTime(v);
        if (l[0] === "env_version" && ENV_VERSIONS[v]) v = ENV_VERSIONS[v] + "（" + v + "）";
        if (l[0] === "api_base" && v === "sandbox") v = "微信沙箱（sandbox）";
        return { name: l[1], value: v };
      });
      rows.push({ name: "提醒模板 ID", value: cfg.templates && cfg.templates.reminder });
      rows.push({ name: "整改反馈模板 ID", value: cfg.templates && cfg.templates.rectified });
      rows.push({ name: "提醒模板字段", value: fieldMap(cfg, "reminder_fields") });
      rows.push({ name: "整改反馈模板字段", value: fieldMap(cfg, "rectified_fields") });
      WXB.clear(holder).appendChild(A.table([{ label: "项目", key: "name" }, { label: "当前值", key: "value" }], rows));
      var refused = cfg.problems && cfg.problems.credentials;
      if (refused) {
        holder.appendChild(el("p", { className: "error", text: "微信拒绝了当前的 AppID 或 AppSecret（错误码 " +
          refused.errcode + "：" + (refused.meaning || "") + "，" + WXB.fmtTime(refused.at) + "），请修改配置。" }));
      }
      return cfg;
    }).catch(function (err) {
      WXB.clear(holder).appendChild(el("p", { className: "error", text: "无法读取配置：" + err.message }));
      return null;
    });
  }

  var FIELD_NAMES = {
    template_reminder: "评价提醒模板 ID", template_rectified: "整改反馈模板 ID",
    reminder_fields: "提醒模板字段", rectified_fields: "整改反馈模板字段",
  };
  LABELS.forEach(function (l) { FIELD_NAMES[l[0]] = l[1]; });
  A.configFieldNames = FIELD_NAMES; // the audit log names a change of the configuration so too

  /* A changed field of the history by its name on this page (the stored name otherwise). */
  function fieldName(field) {
    return FIELD_NAMES[field] || field;
  }

  /* A template's field map as JSON text ({"thing1": "item_name", …}). */
  function fieldMap(cfg, key) {
    var map = cfg && cfg.templates ? cfg.templates[key] : null;
    return map ? JSON.stringify(map) : "";
  }

  function editForm(cfg, reload) {
    var fields = [
      { name: "appid", label: "AppID", value: cfg ? cfg.appid : "", maxlength: 32 },
      { name: "secret", label: "AppSecret（留空则不修改）", type: "password", maxlength: 64 },
      { name: "push_token", label: "消息推送 Token（留空则不修改）", type: "password", maxlength: 32 },
      { name: "aes_key", label: "EncodingAESKey（留空则不修改）", type: "password", maxlength: 43 },
      { name: "reminder", label: "评价提醒模板 ID", value: cfg && cfg.templates ? cfg.templates.reminder : "", maxlength: 64 },
      { name: "rectified", label: "整改反馈模板 ID", value: cfg && cfg.templates ? cfg.templates.rectified : "", maxlength: 64 },
      { name: "reminder_fields", label: "提醒模板字段（JSON：模板字段 → 取值）", type: "textarea", value: fieldMap(cfg, "reminder_fields") },
      { name: "rectified_fields", label: "整改反馈模板字段（JSON，可用 outcome、outcome_text、closed_at）", type: "textarea", value: fieldMap(cfg, "rectified_fields") },
      { name: "miniprogram_page", label: "评价页面路径", value: cfg ? cfg.miniprogram_page : "" },
      { name: "env_version", label: "小程序版本", type: "select", value: cfg ? cfg.env_version : "release",
        options: Object.keys(ENV_VERSIONS).map(function (k) { return [k, ENV_VERSIONS[k] + "（" + k + "）"]; }) },
      { name: "check_path", label: "校验页面路径", type: "checkbox", value: cfg ? cfg.check_path : true },
    ];
    // Only what the admin changed is sent: the history and the audit log then name just that.
    var was = cfg || {};
    var wasTemplates = was.templates || {};
    return A.form(fields, "保存配置", function (v) {
      var body = {};
      ["appid", "miniprogram_page", "env_version"].forEach(function (k) {
        if (v[k] !== undefined && v[k] !== was[k]) body[k] = v[k];
      });
      ["secret", "push_token", "aes_key"].forEach(function (k) { // write-only: typed = changed
        if (v[k] !== undefined) body[k] = v[k];
      });
      if (v.check_path !== Boolean(was.check_path)) body.check_path = v.check_path;
      var templates = {};
      ["reminder", "rectified"].forEach(function (k) {
        if (v[k] !== undefined && v[k] !== wasTemplates[k]) templates[k] = v[k];
      });
      var bad = null;
      ["reminder_fields", "rectified_fields"].forEach(function (k) {
        if (!v[k] || v[k] === fieldMap(was, k)) return;
        try { templates[k] = JSON.parse(v[k]); } catch (e) { bad = k; }
      });
      if (bad) return Promise.reject(new Error((bad === "reminder_fields" ? "提醒模板字段" : "整改反馈模板字段") + "不是有效的 JSON。"));
      if (Object.keys(templates).length) body.templates = templates;
      if (!Object.keys(body).length) return "没有修改。";
      return A.api("PUT", "/wechat-config", body).then(function (saved) {
        was = saved; // the form stays (its message with it): what it shows is now in force
        wasTemplates = saved.templates || {};
        reload(true);
        return "已保存，配置版本 " + saved.version + "，各进程无需重启即生效。";
      });
    });
  }

  function render(content) {
    content.appendChild(A.heading("微信配置", "小程序 AppID、密钥、消息推送与订阅消息模板。密钥仅显示掩码。"));
    var now = A.box("当前生效的配置");
    var test = A.box("连接测试");
    var edit = A.box("修改配置");
    var hist = A.box("修改历史");
    content.appendChild(now);
    var writer = A.can("wechat_config.write");
    if (writer) content.appendChild(test);
    if (writer) content.appendChild(edit);
    if (writer) content.appendChild(hist);

    var note = A.status();
    test.appendChild(el("p", { className: "hint", text: "用当前配置向微信获取一次 access_token。" }));
    test.appendChild(A.button("测试连接", function () {
      A.say(note, "测试中…");
      A.api("POST", "/wechat-config/test", {}).then(function (r) {
        if (r.ok) A.say(note, "连接正常。");
        else A.say(note, "微信返回错误 " + r.errcode + "：" + r.errmsg, true);
      }).catch(function (err) { A.say(note, err.message, true); });
    }, "primary"));
    test.appendChild(note);

    var nowBody = el("div");
    var editBody = el("div");
    var histBody = el("div");
    now.appendChild(nowBody);
    edit.appendChild(editBody);
    hist.appendChild(histBody);

    function reload(keepForm) {
      current(WXB.clear(nowBody)).then(function (cfg) {
        if (writer && !keepForm) WXB.clear(editBody).appendChild(editForm(cfg, reload));
      });
      if (writer) {
        A.pagedTable(WXB.clear(histBody), [
          { label: "版本", key: "version" },
          { label: "修改的项目", value: function (r) { return (r.changed_fields || []).map(fieldName).join("、"); } },
          { label: "修改人", key: "updated_by" },
          { label: "时间", value: function (r) { return WXB.fmtTime(r.updated_at); } },
        ], function () { return A.api("GET", "/wechat-config/history"); });
      }
    }
    reload();
  }

  A.section({ id: "wechat", label: "微信配置", permission: "wechat_config.read", render: render });
})();
