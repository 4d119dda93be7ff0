"use strict";
// Submit a job in either request style. Local files are uploaded first (POST /api/tmp-file or
// POST /file give a presigned PUT URL); the API's own validation message is shown as it is.
document.addEventListener("DOMContentLoaded", () => {
  if (!KF.requireKey()) return;
  const { el, $ } = KF;
  let rowSeq = 0;

  // Split options like a shell would (quotes group words); the API tokenizes commands itself.
  function words(s) {
    const out = [];
    const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
    let m;
    while ((m = re.exec(s || ""))) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2] !== undefined ? m[2] : m[3]);
    return out;
  }

  function removeButton(row, what) {
    return el("button", { type: "button", class: "link", "aria-label": "Remove " + what, onclick: () => row.remove() }, "Remove");
  }

  function vgfInputRow(name, url) {
    const n = ++rowSeq;
    const row = el("div", { class: "row", role: "group", "aria-label": "Input " + n });
    row.append(
      el("div", {}, el("label", { for: "vi-key-" + n }, "Key"),
        el("input", { id: "vi-key-" + n, class: "in-key", value: name || "", spellcheck: "false" })),
      el("div", { class: "grow" }, el("label", { for: "vi-url-" + n }, "URL"),
        el("input", { id: "vi-url-" + n, class: "in-url", type: "url", value: url || "", placeholder: "https://…", spellcheck: "false" })),
      el("div", {}, el("label", { for: "vi-file-" + n }, "or a file"),
        el("input", { id: "vi-file-" + n, class: "in-file", type: "file" })),
      removeButton(row, "input " + n));
    $("vgf-inputs").append(row);
  }

  function taskInputRow() {
    const n = ++rowSeq;
    const row = el("div", { class: "row", role: "group", "aria-label": "Input " + n });
    row.append(
      el("div", { class: "grow" }, el("label", { for: "ti-path-" + n }, "file_path"),
        el("input", { id: "ti-path-" + n, class: "in-path", placeholder: "dir_id/file.mp4 or https://…", spellcheck: "false" })),
      el("div", {}, el("label", { for: "ti-file-" + n }, "or a file"),
        el("input", { id: "ti-file-" + n, class: "in-file", type: "file" })),
      el("div", { class: "grow" }, el("label", { for: "ti-opts-" + n }, "Options"),
        el("input", { id: "ti-opts-" + n, class: "in-opts", placeholder: "-ss 2", spellcheck: "false" })),
      removeButton(row, "input " + n));
    $("task-inputs").append(row);
  }

  function taskOutputRow(file, opts) {
    const n = ++rowSeq;
    const row = el("div", { class: "row", role: "group", "aria-label": "Output " + n });
    row.append(
      el("div", {}, el("label", { for: "to-file-" + n }, "File"),
        el("input", { id: "to-file-" + n, class: "out-file", value: file || "", spellcheck: "false" })),
      el("div", { class: "grow" }, el("label", { for: "to-opts-" + n }, "Options"),
        el("input", { id: "to-opts-" + n, class: "out-opts", value: opts || "", spellcheck: "false" })),
      el("div", { class: "grow" }, el("label", { for: "to-maps-" + n }, "Maps"),
        el("input", { id: "to-maps-" + n, class: "out-maps", placeholder: "0:v 0:a", spellcheck: "false" })),
      removeButton(row, "output " + n));
    $("task-outputs").append(row);
  }

  function style() {
    const v = document.querySelector("input[name=style]:checked").value;
    $("vgf-form").hidden = v !== "vgf";
    $("task-form").hidden = v === "vgf";
  }

  async function submitting(form, errId, progId, work) {
    const err = $(errId), prog = $(progId), button = form.querySelector("button[type=submit]");
    err.textContent = "";
    prog.textContent = "";
    button.disabled = true;
    try {
      const id = await work((msg) => { prog.textContent = msg; });
      prog.textContent = "Submitted " + id + ".";
      location.assign("/ui/jobs/" + encodeURIComponent(id));
    } catch (e) {
      prog.textContent = "";
      err.textContent = (e.status ? "The API refused the job (" + e.status + "): " : "") + e.message;
      err.focus && err.setAttribute("tabindex", "-1");
      err.focus();
    } finally {
      button.disabled = false;
    }
  }

  $("vgf-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    submitting($("vgf-form"), "vgf-error", "vgf-progress", async (say) => {
      const input_files = {};
      for (const row of $("vgf-inputs").querySelectorAll(".row")) {
        const key = row.querySelector(".in-key").value.trim();
        const file = row.querySelector(".in-file").files[0];
        let url = row.querySelector(".in-url").value.trim();
        if (!key && !url && !file) continue;
        if (file) {
          say("Uploading " + file.name + "…");
          url = (await KF.storeFile("vgf", file, {},
            (f) => say("Uploading " + file.name + ": " + Math.round(f * 100) + " %"))).url;
        }
        input_files[key] = url;
      }
      const body = {
        input_files,
        output_files: words($("vgf-outputs").value),
        ffmpeg_commands: $("vgf-commands").value.split("\n").map((s) => s.trim()).filter(Boolean),
        machine: $("vgf-machine").value.trim() || "cpu",
      };
      const timeout = $("vgf-timeout").value.trim();
      if (timeout) body.timeout_seconds = Number(timeout);
      const hook = $("vgf-webhook").value.trim();
      if (hook) body.webhook_url = hook;
      say("Submitting…");
      return (await KF.api("POST", "/api/ffmpeg", body)).data.id;
    });
  });

  $("task-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    submitting($("task-form"), "task-error", "task-progress", async (say) => {
      const inputs = [];
      let dir = $("task-outdir").value.trim() || null;
      for (const row of $("task-inputs").querySelectorAll(".row")) {
        const file = row.querySelector(".in-file").files[0];
        let path = row.querySelector(".in-path").value.trim();
        const options = words(row.querySelector(".in-opts").value);
        if (!path && !file) continue;
        if (file) {
          say("Uploading " + file.name + "…");
          const stored = await KF.storeFile("ffmpeg-api", file, dir ? { dir_id: dir } : {},
            (f) => say("Uploading " + file.name + ": " + Math.round(f * 100) + " %"));
          dir = stored.dir_id;  // later uploads go to the same directory (one input directory per task)
          path = stored.file_path;
        }
        inputs.push({ file_path: path, ...(options.length ? { options } : {}) });
      }
      const outputs = [];
      for (const row of $("task-outputs").querySelectorAll(".row")) {
        const file = row.querySelector(".out-file").value.trim();
        if (!file) continue;
        const options = words(row.querySelector(".out-opts").value), maps = words(row.querySelector(".out-maps").value);
        outputs.push({ file, ...(options.length ? { options } : {}), ...(maps.length ? { maps } : {}) });
      }
      const task = { inputs, outputs };
      const fc = $("task-filter").value.trim();
      if (fc) task.filter_complex = fc;
      const outDir = $("task-outdir").value.trim();
      if (outDir) task.output_dir_id = outDir;
      const body = { task };
      const hook = $("task-webhook").value.trim();
      if (hook) body.webhook_url = hook;
      say("Submitting…");
      return (await KF.api("POST", "/ffmpeg/process/async", body)).job_id;
    });
  });

  for (const r of document.querySelectorAll("input[name=style]")) r.addEventListener("change", style);
  $("vgf-add-input").addEventListener("click", () => vgfInputRow("", ""));
  $("task-add-input").addEventListener("click", taskInputRow);
  $("task-add-output").addEventListener("click", () => taskOutputRow("", ""));
  vgfInputRow("input", "");
  taskInputRow();
  taskOutputRow("output.mp4", "-c:v libx264 -preset veryfast -crf 28");
  style();
  KF.api("GET", "/ui/api/jobs?limit=1").then((l) => {
    $("pools").append(...l.pools.map((p) => el("option", { value: p })));
  }).catch(() => {});
});
