/* 目录管理 (centers, departments, items, staff, windows), 合作方密钥 (partners), 管理员 (admins). */
"use strict";

(function () {
  var el = WXB.el;
  var A = ADMIN;

  var ROLE_OPTIONS = [["window", "窗口人员"], ["approver", "审批人员"]];
  var CATALOG = {
    centers: {
      label: "服务中心", key: "code",
      columns: [["code", "编码"], ["name", "名称"], ["area_code", "行政区划代码"], ["wecom_webhook_key", "企业微信机器人"]],
      fields: [
        { name: "code", label: "编码", required: true, maxlength: 64 },
        { name: "name", label: "名称", required: true },
        { name: "area_code", label: "行政区划代码", required: true, maxlength: 12 },
        { name: "wecom_webhook_key", label: "企业微信群机器人 Webhook 地址或 key（加密保存，不再显示）", maxlength: 200 },
      ],
    },
    departments: {
      label: "部门 / 专窗", key: "code",
      columns: [["code", "编码"], ["name", "名称"], ["center", "所属中心"], ["credit_code", "统一社会信用代码"]],
      fields: [
        { name: "code", label: "编码", required: true, maxlength: 64 },
        { name: "name", label: "名称", required: true },
        { name: "center", label: "所属中心编码", required: true, maxlength: 64 },
        { name: "credit_code", label: "统一社会信用代码", maxlength: 18 },
      ],
    },
    items: {
      label: "服务事项", key: "code",
      columns: [["code", "事项编码"], ["name", "名称"], ["department", "部门"], ["center", "中心"]],
      fields: [
        { name: "code", label: "事项编码", required: true, maxlength: 64 },
        { name: "name", label: "名称", required: true },
        { name: "department", label: "部门编码", required: true, maxlength: 64 },
      ],
    },
    staff: {
      label: "工作人员", key: "staff_no",
      columns: [["staff_no", "工号"], ["name", "姓名"], ["role", "岗位"], ["department", "部门"],
        ["center", "中心"], ["photo_url", "照片"], ["has_id_number", "已登记身份证"], ["active", "在岗"]],
      fields: [
        { name: "staff_no", label: "工号", required: true, maxlength: 64 },
        { name: "name", label: "姓名", required: true, maxlength: 64 },
        { name: "role", label: "岗位", type: "select", options: ROLE_OPTIONS },
        { name: "department", label: "部门编码", required: true, maxlength: 64 },
        { name: "center", label: "中心编码", required: true, maxlength: 64 },
        { name: "photo_url", label: "照片地址（https）", maxlength: 500 },
        { name: "id_number", label: "身份证号（仅存密钥哈希，用于防止自评）", maxlength: 18 },
      ],
    },
    windows: {
      label: "窗口", key: "code",
      columns: [["code", "编码"], ["name", "名称"], ["center", "中心"], ["staff_no", "工作人员工号"]],
      fields: [
        { name: "code", label: "编码", required: true, maxlength: 64 },
        { name: "name", label: "名称", required: true },
        { name: "center", label: "中心编码", required: true, maxlength: 64 },
        { name: "staff_no", label: "工作人员工号", maxlength: 64 },
      ],
    },
  };

  function catalogSection(name, body) {
    var spec = CATALOG[name];
    var listBox = A.box(spec.label + "列表");
    var listBody = el("div");
    listBox.appendChild(listBody);
    var canWrite = A.can(name === "centers" ? "centers.write" : "catalogue.write");

    function reload() {
      var columns = spec.columns.map(function (c) {
        if (c[0] === "photo_url") {
          return { label: c[1], value: function (r) { return r.photo_url ? el("a", { href: r.photo_url, target: "_blank", rel: "noopener noreferrer", text: "查看" }) : null; } };
        }
        if (c[0] === "role") return { label: c[1], value: function (r) { return r.role === "approver" ? "审批人员" : "窗口人员"; } };
        return { label: c[1], key: c[0] };
      });
      if (name === "windows") {
        columns.push({ label: "评价器", value: function (r) {
          var open = el("a", { href: "/device/" + encodeURIComponent(r.code), target: "_blank", rel: "noopener", text: "打开" });
          if (!canWrite) return open;
          // The key pairs the window's screen; shown once, a new one ends the old pairings.
          return el("span", null, open, " ", A.button("生成设备密钥", function () {
            if (!window.confirm("为 " + r.code + " 生成新的设备密钥？已配对的评价器需重新配对。")) return;
            A.api("POST", "/windows/" + encodeURIComponent(r.code) + "/device-key", {}).then(function (a) {
              window.prompt("设备密钥（只显示这一次，请在评价器上输入）：", a.device_key);
            }, function (err) { window.alert("生成失败：" + err.message); });
          }));
        } });
      }
      if (canWrite) {
        columns.push({ label: "操作", value: function (r) {
          var key = r[spec.key];
          var word = name === "staff" ? "停用" : "删除";
          if (name === "staff" && r.active === false) return null;
          var remove = A.button(word, function () {
            if (!window.confirm("确定" + word + " " + key + "？")) return;
            A.api("DELETE", "/" + name + "/" + encodeURIComponent(key)).then(reload, function (err) { window.alert(word + "失败：" + err.message); });
          }, "danger");
          if (name !== "centers") return remove;
          // The robot's key is write-only: set (or clear with an empty answer), never shown.
          var robot = A.button("设置机器人", function () {
            var value = window.prompt("企业微信群机器人的 Webhook 地址或 key（留空则删除）：", "");
            if (value === null) return;
            A.api("PUT", "/centers/" + encodeURIComponent(key), { wecom_webhook_key: value.trim() || null }).then(reload, function (err) { window.alert("设置失败：" + err.message); });
          });
          return el("span", {}, [robot, " ", remove]);
        } });
      }
      A.pagedTable(WXB.clear(listBody), columns, function (cursor) {
        return A.api("GET", "/" + name, null, { cursor: cursor });
      });
    }

    body.appendChild(listBox);
    if (canWrite) {
      var create = A.box("新增" + spec.label);
      create.appendChild(A.form(spec.fields, "新增", function (values) {
        return A.api("POST", "/" + name, values).then(function () { reload(); return "已新增。"; });
      }, { reset: true }));
      body.appendChild(create);
    }
    reload();
  }

  function renderCatalog(content) {
    content.appendChild(A.heading("目录管理", "服务中心、部门、事项、工作人员、窗口。也可用命令 wxbackend catalog import 批量导入。"));
    var tabs = el("div", { className: "tabs" });
    var body = el("div");
    content.appendChild(tabs);
    content.appendChild(body);
    Object.keys(CATALOG).forEach(function (name) {
      tabs.appendChild(el("button", { type: "button", className: "tab", dataset: { tab: name }, text: CATALOG[name].label, onclick: function () { show(name); } }));
    });
    function show(name) {
      Array.prototype.forEach.call(tabs.children, function (t) { t.classList.toggle("active", t.dataset.tab === name); });
      catalogSection(name, WXB.clear(body));
    }
    show("centers");
  }

  function renderPartners(content) {
    content.appendChild(A.heading("合作方密钥", "窗口 / 办件系统调用合作方接口的签名密钥。密钥只在创建时显示一次，请立即妥善保存。"));
    var listBox = A.box("密钥列表");
    var listBody = el("div");
    listBox.appendChild(listBody);
    var create = A.box("新建密钥");
    var secretBox = el("div", { className: "secret-once", hidden: true });
    create.appendChild(A.form([{ name: "name", label: "系统名称", required: true, maxlength: 100 }], "创建", function (v) {
      return A.api("POST", "/partners", { name: v.name }).then(function (key) {
        WXB.clear(secretBox);
        secretBox.hidden = false;
        WXB.append(secretBox,
          el("p", { text: "请立即保存以下密钥，关闭或刷新页面后将无法再次查看：" }),
          el("p", null, "key_id：", el("code", { text: key.key_id })),
          el("p", null, "secret：", el("code", { text: key.secret })));
        reload();
        return "已创建。";
      });
    }, { reset: true }));
    create.appendChild(secretBox);
    content.appendChild(create);
    content.appendChild(listBox);

    function reload() {
      A.pagedTable(WXB.clear(listBody), [
        { label: "密钥编号（key_id）", key: "key_id" },
        { label: "名称", key: "name" },
        { label: "创建时间", value: function (r) { return WXB.fmtTime(r.created_at); } },
        { label: "吊销时间", value: function (r) { return r.revoked_at ? WXB.fmtTime(r.revoked_at) : null; } },
        { label: "操作", value: function (r) {
          if (r.revoked_at) return null;
          return A.button("吊销", function () {
            if (!window.confirm("吊销后该系统的签名请求将全部失败，确定吊销 " + r.key_id + "？")) return;
            A.api("POST", "/partners/" + encodeURIComponent(r.key_id) + "/revoke", {}).then(reload, function (err) { window.alert("吊销失败：" + err.message); });
          }, "danger");
        } },
      ], function () { return A.api("GET", "/partners"); });
    }
    reload();
  }

  function renderAdmins(content) {
    content.appendChild(A.heading("管理员", "每个角色可做的操作与范围（一个部门、一个中心或全部中心）由服务端的权限表决定。"));
    var listBox = A.box("管理员列表");
    var listBody = el("div");
    listBox.appendChild(listBody);
    var create = A.box("新增管理员");
    var roles = (A.me().roles || []).map(function (r) { return [r.role, r.label]; });
    create.appendChild(A.form([
      { name: "username", label: "用户名", required: true, maxlength: 64 },
      { name: "password", label: "初始密码", type: "password", required: true, maxlength: 256 },
      { name: "role", label: "角色", type: "select", options: roles },
      { name: "center", label: "中心编码（按角色需要；留空为全部中心）", maxlength: 64 },
      { name: "department", label: "部门编码（绑定部门的角色必填）", maxlength: 64 },
    ], "新增", function (v) {
      return A.api("POST", "/admins", v).then(function () { reload(); return "已新增。"; });
    }, { reset: true }));
    content.appendChild(listBox);
    content.appendChild(create);

    function reload() {
      A.pagedTable(WXB.clear(listBody), [
        { label: "用户名", key: "username" },
        { label: "角色", value: function (r) { return A.roleLabel(r.role); } },
        { label: "中心", key: "center" },
        { label: "部门", key: "department" },
        { label: "已停用", key: "disabled" },
        { label: "创建时间", value: function (r) { return WXB.fmtTime(r.created_at); } },
        { label: "操作", value: function (r) {
          if (r.disabled) return null;
          return A.button("停用", function () {
            if (!window.confirm("停用 " + r.username + " 并结束其所有会话？")) return;
            A.api("DELETE", "/admins/" + encodeURIComponent(r.username)).then(reload, function (err) { window.alert("停用失败：" + err.message); });
          }, "danger");
        } },
      ], function () { return A.api("GET", "/admins"); });
    }
    reload();
  }

  A.section({ id: "catalog", label: "目录管理", permission: "catalogue.read", render: renderCatalog });
  A.section({ id: "partners", label: "合作方密钥", permission: "partners.manage", render: renderPartners });
  A.section({ id: "admins", label: "管理员", permission: "admins.manage", render: renderAdmins });
})();
