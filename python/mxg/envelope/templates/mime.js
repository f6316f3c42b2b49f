/* mxg secure envelope: a small MIME reader for the decrypted message.
 *
 * It works on "binary strings" (one character per octet, 0-255) so that
 * indexOf and slice find boundaries without touching the octets of binary
 * parts; text is decoded with TextDecoder only at the end, in the part's
 * charset. It reads what mail clients write (RFC 5322 headers, RFC 2045-2047
 * MIME with base64 and quoted-printable, RFC 2231 parameters, RFC 6532 UTF-8
 * headers) and never fails on what it does not know: an unknown part
 * becomes an attachment. Nothing here touches the page or the network.
 */
"use strict";

var MxgMime = (function () {
  // Nesting deeper than this is not mail a person wrote; the rest of such a
  // part is offered as an attachment instead of being walked.
  var MAX_DEPTH = 32;

  function bytesToBinary(bytes) {
    var out = [];
    // fromCharCode.apply takes a bounded number of arguments: go in chunks.
    for (var i = 0; i < bytes.length; i += 0x8000) {
      out.push(String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000)));
    }
    return out.join("");
  }

  function binaryToBytes(text) {
    var out = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
    return out;
  }

  // Text in a charset; an unknown label falls back to Windows-1252, which
  // maps every octet to some character (better a wrong letter than nothing).
  function decodeText(bytes, charset) {
    var label = (charset || "utf-8").trim().toLowerCase();
    try {
      return new TextDecoder(label).decode(bytes);
    } catch (e) {
      return new TextDecoder("windows-1252").decode(bytes);
    }
  }

  // Text whose charset is not declared: UTF-8 when it is valid UTF-8
  // (RFC 6532 headers, 8bit bodies), else Windows-1252.
  function decodeUndeclared(bytes) {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch (e) {
      return new TextDecoder("windows-1252").decode(bytes);
    }
  }

  // Base64 as mail carries it: line breaks and stray characters are
  // skipped, missing padding is added (RFC 2045 §6.8 says to ignore them).
  function base64ToBinary(text) {
    var clean = text.replace(/[^A-Za-z0-9+/]/g, "");
    var cut = clean.length % 4;
    if (cut === 1) clean = clean.slice(0, -1); // an octet needs two characters
    else if (cut) clean += cut === 2 ? "==" : "=";
    return atob(clean);
  }

  // RFC 2045 §6.7: "=" at a line's end is a soft line break, "=XX" one
  // octet; white space at a line's end was added in transport.
  function quotedPrintableToBinary(text) {
    var unpadded = text.replace(/[ \t]+(?=\r?\n|$)/g, "").replace(/=\r?\n/g, "");
    return unpadded.replace(/=([0-9A-Fa-f]{2})/g, function (all, hex) {
      return String.fromCharCode(parseInt(hex, 16));
    });
  }

  // RFC 2047 encoded-words; adjacent ones are joined (§6.2: the white space
  // between them is not text) and decoded together when they share a
  // charset, since a mailer may split one character across two words.
  var WORD = /=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=/g;

  function wordOctets(encoding, text) {
    if (encoding === "b" || encoding === "B") return base64ToBinary(text);
    return quotedPrintableToBinary(text.replace(/_/g, " "));
  }

  function decodeWords(value) {
    var out = "";
    var last = 0;
    var pending = null; // {charset, octets} of the words joined so far
    var match;
    WORD.lastIndex = 0;
    while ((match = WORD.exec(value)) !== null) {
      var between = value.slice(last, match.index);
      var charset = match[1].split("*")[0].toLowerCase(); // RFC 2231 §5 language
      if (pending && /^\s*$/.test(between) && pending.charset === charset) {
        pending.octets += wordOctets(match[2], match[3]);
      } else {
        if (pending) out += decodeText(binaryToBytes(pending.octets), pending.charset);
        out += pending && /^\s*$/.test(between) ? "" : between;
        pending = { charset: charset, octets: wordOctets(match[2], match[3]) };
      }
      last = WORD.lastIndex;
    }
    if (pending) out += decodeText(binaryToBytes(pending.octets), pending.charset);
    return out + value.slice(last);
  }

  // A header field's value: "type/subtype; name=value; name="quoted""
  // into {value, params}, with RFC 2231 continuations (name*0, name*1) and
  // charset'language'%XX values joined and decoded.
  function parseParams(field) {
    var tokens = [];
    var current = "";
    var quoted = false;
    for (var i = 0; i < field.length; i++) {
      var c = field[i];
      if (quoted && c === "\\" && i + 1 < field.length) current += field[++i];
      else if (c === '"') quoted = !quoted;
      else if (c === ";" && !quoted) {
        tokens.push(current);
        current = "";
      } else current += c;
    }
    tokens.push(current);
    var params = {};
    var pieces = {}; // RFC 2231 continuations: name -> [{index, text, encoded}]
    tokens.slice(1).forEach(function (token) {
      var eq = token.indexOf("=");
      if (eq < 0) return;
      var name = token.slice(0, eq).trim().toLowerCase();
      var text = token.slice(eq + 1).trim();
      var m = /^([^*]+)\*(\d+)?(\*)?$/.exec(name);
      if (!m) {
        params[name] = text;
        return;
      }
      (pieces[m[1]] = pieces[m[1]] || []).push({
        index: m[2] === undefined ? 0 : parseInt(m[2], 10),
        text: text,
        encoded: m[3] === "*" || m[2] === undefined,
      });
    });
    Object.keys(pieces).forEach(function (name) {
      var list = pieces[name].sort(function (a, b) { return a.index - b.index; });
      var charset = "utf-8";
      var octets = "";
      list.forEach(function (piece, n) {
        var text = piece.text;
        if (piece.encoded) {
          if (n === 0) {
            var parts = text.split("'");
            if (parts.length >= 3) {
              charset = parts[0] || "utf-8";
              text = parts.slice(2).join("'");
            }
          }
          octets += text.replace(/%([0-9A-Fa-f]{2})/g, function (all, hex) {
            return String.fromCharCode(parseInt(hex, 16));
          });
        } else octets += text;
      });
      params[name] = decodeText(binaryToBytes(octets), charset);
    });
    return { value: tokens[0].trim().toLowerCase(), params: params };
  }

  // RFC 5322 §2.1: the header section ends at the first empty line.
  function splitEntity(raw) {
    var m = /\r?\n\r?\n/.exec(raw);
    if (/^\r?\n/.test(raw)) return { head: "", body: raw.replace(/^\r?\n/, "") };
    if (!m) return { head: raw, body: "" };
    return { head: raw.slice(0, m.index), body: raw.slice(m.index + m[0].length) };
  }

  // RFC 5322 §2.2.3: unfold, then one field per line; names are matched
  // case-insensitively, the first occurrence wins.
  function parseHeaders(head) {
    var fields = {};
    var text = decodeUndeclared(binaryToBytes(head));
    text.replace(/\r?\n(?=[ \t])/g, "").split(/\r?\n/).forEach(function (line) {
      var colon = line.indexOf(":");
      if (colon <= 0) return;
      var name = line.slice(0, colon).trim().toLowerCase();
      if (!(name in fields)) fields[name] = line.slice(colon + 1).trim();
    });
    return fields;
  }

  // RFC 2046 §5.1.1: a delimiter is "--" and the boundary at the start of
  // a line, followed by "--" (the last one), white space or the line's end;
  // the line break before it belongs to the delimiter.
  function findDelimiter(body, delimiter, from) {
    var at = from;
    while ((at = body.indexOf(delimiter, at)) !== -1) {
      var after = body.charAt(at + delimiter.length);
      if ((at === 0 || body[at - 1] === "\n") && /^(|-|\s)$/.test(after)) return at;
      at += 1;
    }
    return -1;
  }

  function splitMultipart(body, boundary) {
    var delimiter = "--" + boundary;
    var parts = [];
    var at = findDelimiter(body, delimiter, 0);
    while (at !== -1) {
      if (body.substr(at + delimiter.length, 2) === "--") break;
      var lineEnd = body.indexOf("\n", at);
      if (lineEnd === -1) break;
      var next = findDelimiter(body, delimiter, lineEnd + 1);
      if (next === -1) {
        parts.push(body.slice(lineEnd + 1)); // no closing delimiter: keep the rest
        break;
      }
      var end = next;
      if (body[end - 1] === "\n") end--;
      if (body[end - 1] === "\r") end--;
      parts.push(body.slice(lineEnd + 1, Math.max(end, lineEnd + 1)));
      at = next;
    }
    return parts;
  }

  function parseEntity(raw, depth) {
    var split = splitEntity(raw);
    var headers = parseHeaders(split.head);
    var type = parseParams(headers["content-type"] || "text/plain");
    if (!/^[\w.+-]+\/[\w.+-]+$/.test(type.value)) type.value = "text/plain";
    var disposition = parseParams(headers["content-disposition"] || "");
    var filename = disposition.params.filename || type.params.name || "";
    var entity = {
      headers: headers,
      type: type.value,
      charset: type.params.charset || "",
      disposition: disposition.value,
      filename: filename ? decodeWords(filename) : "",
      encoding: (headers["content-transfer-encoding"] || "").trim().toLowerCase(),
      body: split.body,
      children: [],
    };
    if (/^multipart\//.test(entity.type) && type.params.boundary && depth < MAX_DEPTH) {
      entity.children = splitMultipart(split.body, type.params.boundary).map(function (part) {
        return parseEntity(part, depth + 1);
      });
    }
    return entity;
  }

  // The part's content octets, its transfer encoding undone.
  function contentOf(entity) {
    if (entity.encoding === "base64") return binaryToBytes(base64ToBinary(entity.body));
    if (entity.encoding === "quoted-printable") {
      return binaryToBytes(quotedPrintableToBinary(entity.body));
    }
    return binaryToBytes(entity.body);
  }

  function textOf(entity) {
    var octets = contentOf(entity);
    return entity.charset ? decodeText(octets, entity.charset) : decodeUndeclared(octets);
  }

  var EXTENSIONS = { "text/plain": ".txt", "text/html": ".html", "message/rfc822": ".eml" };

  // Walks the tree: the first text/plain and text/html parts that are not
  // attachments are the body (a later inline text/plain part is appended,
  // as mail clients show it); every other leaf is an attachment.
  function collect(entity, out) {
    if (entity.children.length) {
      entity.children.forEach(function (child) { collect(child, out); });
      return;
    }
    var inline = entity.disposition !== "attachment" && !entity.filename;
    if (inline && entity.type === "text/plain") {
      out.text = out.text === null ? textOf(entity) : out.text + "\n\n" + textOf(entity);
      return;
    }
    if (inline && entity.type === "text/html" && out.html === null) {
      out.html = textOf(entity);
      return;
    }
    out.attachments.push({
      name: entity.filename || "part-" + (out.attachments.length + 1) +
        (EXTENSIONS[entity.type] || ".bin"),
      type: entity.type,
      bytes: contentOf(entity),
    });
  }

  // The whole message: its display headers, body text and attachments.
  function parse(bytes) {
    var root = parseEntity(bytesToBinary(bytes), 0);
    var out = { text: null, html: null, attachments: [], headers: {} };
    ["from", "to", "cc", "date", "subject"].forEach(function (name) {
      out.headers[name] = decodeWords(root.headers[name] || "");
    });
    collect(root, out);
    return out;
  }

  return { parse: parse, decodeWords: decodeWords, parseParams: parseParams };
})();
