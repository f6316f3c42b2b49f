/* mxg secure envelope: the page's own code.
 *
 * The envelope (the JSON block "mxg-envelope") holds a PBKDF2 salt and
 * iteration count, an AES-GCM nonce and the encrypted message. The
 * password is turned into a key here, with WebCrypto, as a non-extractable
 * key object: it never leaves the browser, and the page makes no request
 * at all (its Content-Security-Policy forbids every one). After decrypting,
 * MxgMime reads the message; what it holds is put on the page as text
 * only, and an HTML body goes into a sandboxed frame without scripts.
 */
"use strict";

(function () {
  var FORMAT = "mxg-envelope-1";

  function $(id) {
    return document.getElementById(id);
  }

  function base64ToBytes(text) {
    var binary = atob(text);
    var out = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  }

  function readEnvelope() {
    var data = JSON.parse($("mxg-envelope").textContent);
    if (data.format !== FORMAT || !(data.iterations >= 600000)) throw new Error("format");
    return {
      iterations: data.iterations,
      salt: base64ToBytes(data.salt),
      nonce: base64ToBytes(data.nonce),
      ciphertext: base64ToBytes(data.ciphertext),
    };
  }

  // PBKDF2-HMAC-SHA256 → AES-256-GCM key → plaintext. The password is
  // normalised as the server did (NFC, surrounding white space removed).
  // A wrong password makes decrypt reject with an OperationError: GCM's
  // tag does not match.
  async function decrypt(envelope, password) {
    var encoder = new TextEncoder();
    var material = await crypto.subtle.importKey(
      "raw", encoder.encode(password.normalize("NFC").trim()), "PBKDF2", false, ["deriveKey"]);
    var key = await crypto.subtle.deriveKey(
      { name: "PBKDF2", hash: "SHA-256", salt: envelope.salt, iterations: envelope.iterations },
      material, { name: "AES-GCM", length: 256 }, false, ["decrypt"]);
    var plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: envelope.nonce, additionalData: encoder.encode(FORMAT),
        tagLength: 128 },
      key, envelope.ciphertext);
    return new Uint8Array(plain);
  }

  // A file name that cannot name a directory or carry control characters.
  function safeName(name) {
    var clean = name.replace(/[\\/\u0000-\u001f\u007f]/g, "_").replace(/^\.+/, "_");
    return clean || "attachment";
  }

  function sizeText(octets) {
    if (octets < 1024) return octets + " B";
    if (octets < 1024 * 1024) return (octets / 1024).toFixed(1) + " KB";
    return (octets / 1024 / 1024).toFixed(1) + " MB";
  }

  function downloadLink(link, bytes, name, type) {
    link.href = URL.createObjectURL(new Blob([bytes], { type: type || "application/octet-stream" }));
    link.download = safeName(name);
  }

  // The HTML body, made inert before it reaches the sandboxed frame (which
  // already runs no script): DOMParser builds a document without running
  // anything; what could act (scripts, frames, forms, refreshes, base URLs,
  // event handlers) or load from outside is removed.
  function inertHtml(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    doc.querySelectorAll("script, iframe, frame, object, embed, form, base, link, meta")
      .forEach(function (node) { node.remove(); });
    doc.querySelectorAll("*").forEach(function (node) {
      Array.prototype.slice.call(node.attributes).forEach(function (attr) {
        if (/^on/i.test(attr.name) || /^\s*(javascript|data|vbscript):/i.test(attr.value)) {
          node.removeAttribute(attr.name);
        }
      });
    });
    return "<!DOCTYPE html>" + doc.documentElement.outerHTML;
  }

  function show(message, raw) {
    $("h-from").textContent = message.headers.from;
    $("h-to").textContent = message.headers.to;
    $("h-cc").textContent = message.headers.cc;
    document.querySelectorAll(".cc").forEach(function (el) { el.hidden = !message.headers.cc; });
    $("h-date").textContent = message.headers.date;
    $("h-subject").textContent = message.headers.subject;
    var frame = $("body-html");
    if (message.html !== null) frame.srcdoc = inertHtml(message.html);
    if (message.text !== null) {
      $("body-text").textContent = message.text;
      $("body-text").hidden = false;
      $("show-html").hidden = message.html === null;
      $("show-html").addEventListener("click", function () {
        frame.hidden = !frame.hidden;
      });
    } else if (message.html !== null) {
      frame.hidden = false;
    }
    var list = $("attachments");
    message.attachments.forEach(function (att) {
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.className = "button attachment";
      link.textContent = safeName(att.name);
      downloadLink(link, att.bytes, att.name, att.type);
      var size = document.createElement("span");
      size.className = "size";
      size.textContent = sizeText(att.bytes.length);
      item.append(link, size);
      list.append(item);
    });
    $("no-attachments").hidden = message.attachments.length > 0;
    downloadLink($("whole-message"), raw, "nachricht-message.eml", "message/rfc822");
    $("unlock").hidden = true;
    $("intro").hidden = true;
    $("message").hidden = false;
  }

  // A message the reader cannot take apart is still offered whole (.eml).
  function readMessage(raw) {
    try {
      return MxgMime.parse(raw);
    } catch (e) {
      var none = { from: "", to: "", cc: "", date: "", subject: "" };
      return { text: null, html: null, attachments: [], headers: none };
    }
  }

  function start() {
    if (!(window.crypto && crypto.subtle && window.TextDecoder)) {
      $("unlock").hidden = true;
      $("error-browser").hidden = false;
      return;
    }
    var envelope;
    try {
      envelope = readEnvelope();
    } catch (e) {
      $("unlock").hidden = true;
      $("error-format").hidden = false;
      return;
    }
    $("unlock").addEventListener("submit", async function (event) {
      event.preventDefault();
      var input = $("password");
      $("error-password").hidden = true;
      $("busy").hidden = false;
      $("open").disabled = true;
      var raw = null;
      try {
        raw = await decrypt(envelope, input.value);
      } catch (e) {
        // OperationError: the tag did not match (wrong password or altered file).
        $("error-password").hidden = false;
        input.value = "";
        input.focus();
      } finally {
        $("busy").hidden = true;
        $("open").disabled = false;
      }
      if (raw !== null) {
        input.value = "";
        show(readMessage(raw), raw);
      }
    });
  }

  start();
})();
