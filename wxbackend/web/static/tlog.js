/* 公开记录（透明日志）: the current signed checkpoint, and a "verify" view that checks one
   rating's receipt against it in the browser (RFC 9162 inclusion, SHA-256 via WebCrypto).
   The checkpoint's Ed25519 signature and the log's full history are checked by
   `wxbackend verify-log`, which anyone can run. */
"use strict";

(function () {
  var $ = function (id) { return document.getElementById(id); };
  var LOG = "/api/v1/public/log";
  var current = null;

  function hex(bytes) {
    return Array.prototype.map.call(new Uint8Array(bytes), function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }
  function unhex(text) {
    var out = new Uint8Array(text.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
    return out;
  }
  function sha256(parts) {
    var total = parts.reduce(function (n, p) { return n + p.length; }, 0);
    var data = new Uint8Array(total);
    var at = 0;
    parts.forEach(function (p) { data.set(p, at); at += p.length; });
    return crypto.subtle.digest("SHA-256", data).then(function (d) { return new Uint8Array(d); });
  }
  function node(left, right) { return sha256([new Uint8Array([1]), left, right]); }

  /* RFC 9162 2.1.3.2 */
  function verifyInclusion(index, size, leafHash, proof, root) {
    if (index >= size) return Promise.resolve(false);
    var fn = index, sn = size - 1, r = Promise.resolve(leafHash), i = 0;
    function step() {
      if (i === proof.length) {
        return r.then(function (value) { return sn === 0 && hex(value) === hex(root); });
      }
      var p = proof[i++];
      if (sn === 0) return Promise.resolve(false);
      if (fn % 2 === 1 || fn === sn) {
        r = r.then(function (value) { return node(p, value); });
        if (fn % 2 === 0) { while (fn % 2 === 0 && fn !== 0) { fn >>= 1; sn >>= 1; } }
      } else {
        r = r.then(function (value) { return node(value, p); });
      }
      fn >>= 1; sn >>= 1;
      return step();
    }
    return step();
  }

  function loadCheckpoint() {
    return fetch(LOG + "/checkpoint").then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    }).then(function (text) {
      var lines = text.split("\n");
      var root = atob(lines[2]);
      current = {
        origin: lines[0],
        size: parseInt(lines[1], 10),
        root: Uint8Array.from(root, function (c) { return c.charCodeAt(0); })
      };
      $("tlog-origin").textContent = current.origin;
      $("tlog-size").textContent = String(current.size);
      $("tlog-root").textContent = hex(current.root);
      WXB.showError($("tlog-error"), "");
    }).catch(function (err) {
      WXB.showError($("tlog-error"), "日志检查点暂时无法获取：" + err.message);
    });
  }

  function say(text, ok) {
    var box = $("tlog-result");
    box.textContent = text;
    box.className = ok ? "tlog-ok" : "error";
    box.hidden = false;
  }

  function verify(event) {
    event.preventDefault();
    var receipt;
    try {
      var data = JSON.parse($("tlog-receipt").value);
      var evaluation = data.evaluation || data;
      receipt = evaluation.receipt || data;
      if (typeof receipt.leaf_index !== "number" || !receipt.leaf_hash) throw new Error("no receipt");
    } catch (err) {
      say("请粘贴评价回执（评价提交后的应答或“我的评价”中的 receipt）。", false);
      return;
    }
    loadCheckpoint().then(function () {
      if (!current || receipt.leaf_index >= current.size) {
        say("该评价尚未进入已签名的检查点，请一分钟后再试。", false);
        return null;
      }
      var url = LOG + "/proof/inclusion" + WXB.query({
        leaf_index: receipt.leaf_index, tree_size: current.size
      });
      return WXB.getJSON(url).then(function (proof) {
        return verifyInclusion(
          receipt.leaf_index, current.size, unhex(receipt.leaf_hash),
          proof.hashes.map(unhex), current.root
        );
      }).then(function (ok) {
        say(ok
          ? "已验证：第 " + receipt.leaf_index + " 条记录包含在 " + current.size + " 条记录的公开日志中，未被删改。"
          : "验证失败：该回执不在当前签名的日志中！", ok);
      });
    }).catch(function (err) { say("验证失败：" + err.message, false); });
  }

  if ($("tlog")) {
    loadCheckpoint();
    $("tlog-form").addEventListener("submit", verify);
  }
})();
