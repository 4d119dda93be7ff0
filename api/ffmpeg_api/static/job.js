"use strict";
// One job: GET /ui/api/jobs/{id} (the /api/jobs/{id} object plus commands, steps, chunks,
// conditions and webhook deliveries), refreshed on each event of /api/ffmpeg/{id}/events when
// that stream answers, else polled. Cancel: POST /api/jobs/{id}/cancel.
document.addEventListener("DOMContentLoaded", () => {
  if (!KF.requireKey()) return;
  const { el, $, clear } = KF;
  const id = $("job-id").dataset.jobId;
  const enc = encodeURIComponent(id);
  const VIDEO = /\.(mp4|m4v|mov|webm|mkv|ogv)$/i, AUDIO = /\.(mp3|m4a|aac|wav|ogg|oga|opus|flac)$/i,
    IMAGE = /\.(png|jpe?g|gif|webp|avif|bmp)$/i;
  let shownOutputs = "";

  const same = (a, ...others) => others.some((o) => String(o || "").toLowerCase() === String(a).toLowerCase());
  const fact = (dt, dd) => (dd === null || dd === undefined || dd === "") ? [] : [el("dt", {}, dt), el("dd", {}, dd)];

  function preview(r) {
    const box = clear($("preview"));
    const label = "Preview of " + r.file_name;
    let media;
    if (VIDEO.test(r.file_name)) media = el("video", { controls: true, preload: "metadata", src: r.download_url, "aria-label": label });
    else if (AUDIO.test(r.file_name)) media = el("audio", { controls: true, preload: "metadata", src: r.download_url, "aria-label": label });
    else if (IMAGE.test(r.file_name)) media = el("img", { src: r.download_url, alt: label });
    else media = el("p", {}, "No preview for this kind of file; download it instead.");
    box.append(el("h3", {}, r.file_name), media);
    if (media.focus && media.tagName !== "P") media.setAttribute("tabindex", "0");
  }

  function outputs(job) {
    const key = job.result.map((r) => r.file_name).join("|");
    $("outputs-section").hidden = job.result.length === 0;
    if (key === shownOutputs) return;  // keep a playing preview playing
    shownOutputs = key;
    clear($("outputs")).append(...job.result.map((r) => {
      const media = r.media || {};
      const info = [KF.bytes(r.size_bytes), media.duration ? Number(media.duration).toFixed(2) + " s" : "",
        media.width && media.height ? media.width + "×" + media.height : "", media.video_codec || "", media.audio_codec || ""]
        .filter(Boolean).join(" · ");
      return el("li", {},
        el("span", { class: "file" }, r.file_name), el("span", { class: "muted small" }, info),
        el("span", { class: "actions" },
          el("button", { type: "button", onclick: () => preview(r) }, "Preview"),
          el("a", { class: "button", href: r.download_url, download: r.file_name, rel: "noopener" }, "Download")));
    }));
    if (job.result.length) preview(job.result[0]);
  }

  function steps(job) {
    clear($("steps")).append(...job.steps.map((s) => el("li", { class: "step st-" + s.state },
      el("div", { class: "step-head" }, el("span", {}, "Step " + s.number + " · " + s.state),
        el("progress", { max: "100", value: String(s.percent), "aria-label": "Step " + s.number + " progress" }),
        el("span", { class: "num" }, Math.round(s.percent) + " %")),
      el("code", { class: "cmd" }, s.command))));
    const io = clear($("io"));
    for (const [name, src] of Object.entries(job.inputs)) io.append(...fact("Input {{" + name + "}}", src));
    io.append(...fact("Outputs", job.outputs.join(", ")), ...fact("filter_complex", job.filter_complex));
  }

  function chunks(job) {
    $("chunks-section").hidden = job.chunks.length === 0;
    clear($("chunks")).append(...job.chunks.map((c) => el("tr", {},
      el("th", { scope: "row" }, String(c.index)),
      el("td", {}, c.start.toFixed(2) + " – " + (c.end === null ? "end" : c.end.toFixed(2))),
      el("td", {}, c.phase),
      el("td", {}, KF.progressBar(Math.round(c.percent), "Chunk " + c.index + " progress")),
      el("td", { class: "num" }, String(c.attempts)))));
  }

  function timeline(job) {
    const items = [el("li", {}, el("time", { datetime: job.created_at }, KF.when(job.created_at)), " ",
      el("strong", {}, "Created"), " (pool " + job.machine + ")")];
    for (const c of job.conditions) {
      items.push(el("li", { class: c.status === "True" ? "" : "muted" },
        el("time", { datetime: c.time || "" }, KF.when(c.time)), " ",
        el("strong", {}, c.type + (c.status === "True" ? "" : " = " + c.status)),
        c.reason ? " (" + c.reason + ")" : "", c.message ? ": " + c.message : ""));
    }
    clear($("timeline")).append(...items);
  }

  function webhook(job) {
    const w = job.webhook;
    $("webhook-state").textContent = w.webhook_url
      ? w.webhook_url + " — " + w.state + (w.delivered_at ? " at " + KF.when(w.delivered_at) : "") +
        (w.next_attempt_at ? ", next try " + KF.when(w.next_attempt_at) : "")
      : "No webhook URL.";
    $("webhook-table").hidden = w.attempts.length === 0;
    clear($("webhook-attempts")).append(...w.attempts.map((a) => el("tr", {},
      el("td", {}, KF.when(a.time)), el("td", {}, el("code", {}, a.delivery_id || "")), el("td", { class: "num" }, String(a.attempt || "")),
      el("td", {}, a.status_code ? "HTTP " + a.status_code : (a.error || "")))));
  }

  function render(job) {
    document.title = "Job " + job.id + " · kubeffmpeg";
    clear($("job-status")).append(KF.badge(job.status));
    const pct = KF.percentOf(job);
    $("job-progress").value = pct;
    $("job-percent").textContent = pct + " %";
    clear($("facts")).append(
      ...fact("Status", job.status + (job.reason && !same(job.reason, job.status, job.phase) ? " (" + job.reason + ")" : "")),
      ...fact("Step", job.progress ? job.progress.step + " of " + job.progress.steps : ""),
      ...fact("Speed", job.progress ? job.progress.speed : ""),
      ...fact("Pool", job.machine), ...fact("Submitted with", job.surface),
      ...fact("Created", KF.when(job.created_at)), ...fact("Started", KF.when(job.started_at)),
      ...fact("Finished", KF.when(job.finished_at)), ...fact("Run time", KF.elapsed(job)),
      ...fact("Timeout", job.timeout_seconds ? job.timeout_seconds + " s" : ""),
      ...fact("Attempts", job.attempts));
    const failed = job.status === "failed" || job.status === "cancelled";
    $("error-section").hidden = !failed;
    if (failed) {
      const cancelled = job.status === "cancelled";
      $("error-section").classList.toggle("cancelled", cancelled);
      $("h-error").textContent = cancelled ? "Cancelled" : "Error";
      // The summary: why it ended; below it the worker's error, which ends with FFmpeg's stderr tail.
      const detail = job.error || job.message || "";
      const summary = cancelled ? job.error_message
        : (job.reason ? "Reason: " + job.reason + ". " : "") +
          (job.message && job.message !== detail ? job.message : "FFmpeg's own words (the tail of its stderr):");
      $("error-summary").textContent = summary;
      $("error-text").textContent = detail;
      $("error-text").hidden = !detail || cancelled && detail === job.error_message;
    }
    $("cancel").hidden = KF.TERMINAL.includes(job.status);
    outputs(job);
    steps(job);
    chunks(job);
    timeline(job);
    webhook(job);
    const u = job.usage;
    clear($("usage")).append(...(u ? [...fact("FFmpeg time", KF.seconds(u.time_sec)),
      ...fact("Input", u.input_size_gb.toFixed(6) + " GB"), ...fact("Output", u.output_size_gb.toFixed(6) + " GB"),
      ...fact("gb_sec", u.gb_sec.toFixed(6))] : [el("dd", {}, "Known when the job finishes.")]));
  }

  async function refresh() {
    let job;
    try {
      job = (await KF.api("GET", "/ui/api/jobs/" + enc)).data;
    } catch (e) {
      if (e.status === 404) { KF.notice("Job " + id + " was not found (it may have expired, or belong to another key)."); return true; }
      throw e;
    }
    KF.notice("");
    render(job);
    // A finished job changes no more once its webhook is settled.
    return KF.TERMINAL.includes(job.status) && !["pending", "retrying"].includes(job.webhook.state);
  }

  const modes = { events: "Live: server events.", polling: "Live: refreshed every second.", final: "" };
  const updates = KF.live({ refresh, interval: 1000, events: "/api/ffmpeg/" + enc + "/events",
    onMode: (m) => { $("live-mode").textContent = modes[m] || ""; } });

  $("cancel").addEventListener("click", async () => {
    if (!confirm("Cancel job " + id + "?")) return;
    const b = $("cancel");
    b.disabled = true;
    try {
      await KF.api("POST", "/api/jobs/" + enc + "/cancel");
      KF.notice("Cancel requested.", "info");
      updates.refresh();
    } catch (e) {
      KF.notice("Could not cancel: " + e.message);
    } finally {
      b.disabled = false;
    }
  });
});
