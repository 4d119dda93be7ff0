// kubeffmpeg dashboard: shared helpers. No build step, no framework: plain DOM.
// The API key lives in sessionStorage (this tab's session) and is sent as `Authorization: Bearer`.
// Everything shown comes from the REST API through `KF.api`; data is put in the page with
// textContent only (never as HTML).
"use strict";

const KF = (() => {
  const STORE = "kubeffmpeg.apiKey";
  const TENANT = "kubeffmpeg.tenant";

  function key() { return sessionStorage.getItem(STORE) || ""; }
  function setKey(k, tenant) {
    sessionStorage.setItem(STORE, k);
    if (tenant) sessionStorage.setItem(TENANT, tenant);
  }
  function forget() { sessionStorage.removeItem(STORE); sessionStorage.removeItem(TENANT); }

  function toLogin(reason) {
    const next = location.pathname + location.search;
    const q = new URLSearchParams({ next });
    if (reason) q.set("reason", reason);
    location.replace("/ui/login?" + q.toString());
  }

  // A page that shows data asks for the key before anything else.
  function requireKey() {
    if (!key()) { toLogin(""); return false; }
    return true;
  }

  class ApiError extends Error {
    constructor(status, message, body) { super(message); this.status = status; this.body = body; }
  }

  // One REST call with the key; JSON in and out. Errors carry the API's own message.
  async function api(method, path, body, opts = {}) {
    const headers = { Authorization: "Bearer " + (opts.key || key()), Accept: "application/json" };
    // credentials "omit": a 401 (with WWW-Authenticate: Basic) must not open the browser's own login dialog.
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    let resp;
    try { resp = await fetch(path, init); } catch (e) { throw new ApiError(0, "The API did not answer: " + e.message); }
    let data = null;
    const text = await resp.text();
    if (text) { try { data = JSON.parse(text); } catch (e) { data = { error: text }; } }
    if (!resp.ok) {
      const msg = (data && (data.message || data.error)) || resp.statusText || "request failed";
      if (resp.status === 401 && !opts.key) { forget(); toLogin("expired"); }
      throw new ApiError(resp.status, msg, data);
    }
    return data;
  }

  // PUT a local file to a presigned URL (the store's own origin).
  async function putFile(url, file, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
      xhr.onload = () => (xhr.status >= 200 && xhr.status < 300) ? resolve() :
        reject(new ApiError(xhr.status, "Upload refused by the store (HTTP " + xhr.status + ")"));
      xhr.onerror = () => reject(new ApiError(0, "Upload failed: the store did not answer"));
      xhr.send(file);
    });
  }

  // Store a local file for a job (docs/large-files.md): one presigned PUT, or in parts, 4 at a time,
  // from 256 MiB or when the API refuses the single PUT (over its single-upload limit).
  // surface "vgf": a temporary file, answers {url}; "ffmpeg-api": into `extra.dir_id` (or a new
  // directory), answers {dir_id, file_path}.
  const PARTS_FROM = 256 * 1024 * 1024;
  async function storeFile(surface, file, extra, onProgress) {
    const name = file.name.replace(/[\/\\]/g, "_");
    const vgf = surface === "vgf";
    if (file.size < PARTS_FROM) {
      try {
        if (vgf) {
          const t = (await api("POST", "/api/tmp-file", { file_name: name, file_size: file.size })).data;
          await putFile(t.upload_url, file, onProgress);
          return { url: t.download_url };
        }
        const reg = await api("POST", "/file", { file_name: name, file_size: file.size, ...extra });
        await putFile(reg.upload.url, file, onProgress);
        return { dir_id: reg.file.dir_id, file_path: reg.file.file_path };
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 400 && /single-upload limit/.test(e.message))) throw e;
      }
    }
    const base = vgf ? "/api/uploads" : "/uploads";
    const started = await api("POST", base, { file_name: name, file_size: file.size, ...(vgf ? {} : extra) });
    const up = vgf ? started.data : started.upload;
    const urls = new Map(up.parts.map((p) => [p.part_number, p.url]));
    const numbers = Array.from({ length: up.part_count }, (_, i) => i + 1);
    const sent = new Map();
    const report = () => { if (onProgress) onProgress([...sent.values()].reduce((a, b) => a + b, 0) / (file.size || 1)); };
    for (let i = 0; i < numbers.length; i += 1000) {  // part URLs come in batches of at most 1,000
      const batch = numbers.slice(i, i + 1000);
      const want = batch.filter((n) => !urls.has(n));
      if (want.length) {
        const got = await api("POST", `${base}/${up.upload_id}/urls`, { part_numbers: want });
        for (const p of (vgf ? got.data : got).parts) urls.set(p.part_number, p.url);
      }
      const queue = batch.slice();
      const worker = async () => {
        for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
          const start = (n - 1) * up.part_size;
          const part = file.slice(start, Math.min(start + up.part_size, file.size));
          await putFile(urls.get(n), part, (f) => { sent.set(n, f * part.size); report(); });
          sent.set(n, part.size);
          report();
        }
      };
      await Promise.all([worker(), worker(), worker(), worker()]);
    }
    // No ETags sent: the API completes with the parts storage lists (a browser may not read them).
    const done = await api("POST", `${base}/${up.upload_id}/complete`);
    return vgf ? { url: done.data.download_url } : { dir_id: done.file.dir_id, file_path: done.file.file_path };
  }

  // el("a", {href: "/x", class: "b"}, "text", child, ...): a DOM node; strings become text.
  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") n.className = v;
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else if (k in n && typeof v !== "string") n[k] = v;
      else n.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      n.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return n;
  }
  function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); return n; }
  function $(id) { return document.getElementById(id); }

  function notice(msg, kind) {
    const n = $("notice");
    if (!n) return;
    n.textContent = msg || "";
    n.className = "notice " + (kind || "error");
    n.hidden = !msg;
  }

  // ---------------------------------------------------------------------------- formatting
  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString([], { dateStyle: "short", timeStyle: "medium" });
  }
  function bytes(n) {
    if (n === null || n === undefined) return "";
    const u = ["B", "KB", "MB", "GB", "TB"];
    let i = 0, v = Number(n);
    while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
    return (i ? v.toFixed(1) : String(v)) + " " + u[i];
  }
  function seconds(s) {
    if (s === null || s === undefined) return "";
    s = Number(s);
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
    const m = Math.floor(s / 60);
    return m + " min " + Math.round(s - 60 * m) + " s";
  }
  function ttl(s) {
    s = Number(s);
    const round = (v) => String(Math.round(v * 10) / 10);
    if (s >= 86400) { const d = round(s / 86400); return d + (d === "1" ? " day" : " days"); }
    if (s >= 3600) return round(s / 3600) + " h";
    return Math.round(s / 60) + " min";
  }
  function elapsed(job) {
    if (!job.started_at) return "";
    const end = job.finished_at ? new Date(job.finished_at) : new Date();
    return seconds(Math.max(0, (end - new Date(job.started_at)) / 1000));
  }
  function percentOf(job) {
    if (job.status === "succeeded") return 100;
    return job.progress ? Math.round(job.progress.percent) : 0;
  }
  function badge(status) { return el("span", { class: "badge s-" + status }, status); }
  function progressBar(pct, label) {
    return el("span", { class: "bar" },
      el("progress", { max: "100", value: String(pct), "aria-label": label }), el("span", { class: "num" }, pct + " %"));
  }
  const TERMINAL = ["succeeded", "failed", "cancelled"];

  // ---------------------------------------------------------------------------- live updates
  // `live({refresh, interval, events})` calls `refresh()` now and then on every change.
  // Changes come from the job's event stream when `events` (a URL) answers with
  // `text/event-stream`, else from polling every `interval` ms. `refresh` returns true when
  // nothing more will change (then updates stop). The stream is read with fetch() because
  // EventSource cannot send the Authorization header; any event triggers a refresh.
  function live({ refresh, interval, events, onMode }) {
    let stopped = false, timer = null, streaming = false, busy = false, again = false;
    const ctrl = new AbortController();
    const mode = (m) => { if (onMode) onMode(m); };

    async function run() {
      if (busy) { again = true; return; }
      busy = true;
      try {
        if (await refresh()) stop();
      } catch (e) {
        notice(e.message);
      } finally {
        busy = false;
        if (again && !stopped) { again = false; run(); }
      }
    }
    function schedule() {
      if (stopped) return;
      clearTimeout(timer);
      // While streaming, a slow poll only guards against a silent stream.
      // A hidden tab is not polled; it catches up when shown (visibilitychange below).
      timer = setTimeout(async () => { if (!document.hidden) await run(); schedule(); },
        streaming ? Math.max(interval * 10, 15000) : interval);
    }
    function stop() {
      stopped = true;
      clearTimeout(timer);
      ctrl.abort();
      mode("final");
    }
    async function stream() {
      try {
        const resp = await fetch(events, {
          headers: { Authorization: "Bearer " + key(), Accept: "text/event-stream" },
          signal: ctrl.signal, cache: "no-store", credentials: "omit",
        });
        const type = resp.headers.get("Content-Type") || "";
        if (!resp.ok || !type.startsWith("text/event-stream") || !resp.body) { mode("polling"); return; }
        streaming = true;
        mode("events");
        schedule();
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
            if (/^data:/m.test(block)) run();
          }
        }
      } catch (e) {
        if (stopped) return;
      }
      streaming = false;
      if (!stopped) { mode("polling"); schedule(); }
    }

    document.addEventListener("visibilitychange", () => { if (!document.hidden && !stopped) run(); });
    run().then(() => { if (!stopped) { if (events) stream(); else mode("polling"); schedule(); } });
    return { stop, refresh: run };
  }

  // ---------------------------------------------------------------------------- page chrome
  function chrome() {
    const out = $("signout");
    if (out) out.addEventListener("click", () => { forget(); location.assign("/ui/login"); });
    const who = $("who");
    const tenant = sessionStorage.getItem(TENANT);
    if (who && tenant) who.textContent = "tenant " + tenant;
  }
  document.addEventListener("DOMContentLoaded", chrome);

  return {
    key, setKey, forget, requireKey, api, putFile, storeFile, ApiError, el, clear, $, notice, when, bytes, seconds,
    ttl, elapsed, percentOf, badge, progressBar, live, TERMINAL,
  };
})();
