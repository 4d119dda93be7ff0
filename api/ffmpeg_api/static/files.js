"use strict";
// Directories and files: GET /directory, GET /directory/{id}, POST /directory, POST /file (upload),
// GET /file/download/{dir}/{file} (a presigned link), DELETE /file/{dir}/{file}.
document.addEventListener("DOMContentLoaded", () => {
  if (!KF.requireKey()) return;
  const { el, $, clear } = KF;
  let current = new URLSearchParams(location.search).get("dir") || "";

  async function loadDirs() {
    const dirs = (await KF.api("GET", "/directory")).directories;
    dirs.sort((a, b) => (b.added_on || "").localeCompare(a.added_on || ""));
    clear($("dirs")).append(...dirs.map((d) => el("li", {},
      el("button", { type: "button", class: "link dir" + (d.id === current ? " current" : ""),
        "aria-current": d.id === current ? "true" : null, onclick: () => open(d.id) }, d.id),
      el("span", { class: "muted small" }, KF.when(d.added_on) + " · kept " + KF.ttl(d.ttl)))));
    $("dirs-empty").hidden = dirs.length > 0;
  }

  async function open(dir) {
    current = dir;
    history.replaceState(null, "", "/ui/files?dir=" + encodeURIComponent(dir));
    $("files-section").hidden = false;
    $("dir-name").textContent = dir;
    await Promise.all([loadFiles(), loadDirs()]);
    $("h-files").setAttribute("tabindex", "-1");
    $("h-files").focus();
  }

  async function loadFiles() {
    const files = (await KF.api("GET", "/directory/" + encodeURIComponent(current))).files;
    const path = (f) => encodeURIComponent(current) + "/" + encodeURIComponent(f.file_name);
    clear($("files")).append(...files.map((f) => el("tr", {},
      el("th", { scope: "row" }, f.file_name),
      el("td", { class: "num" }, KF.bytes(f.size_bytes)),
      el("td", {}, KF.when(f.added_on)),
      el("td", {}, el("div", { class: "actions" },
        el("button", { type: "button", "aria-label": "Download " + f.file_name, onclick: async () => {
          try {
            const d = (await KF.api("GET", "/file/download/" + path(f))).download;
            window.open(d.url, "_blank", "noopener");
          } catch (e) { KF.notice(e.message); }
        } }, "Download"),
        el("button", { type: "button", class: "danger", "aria-label": "Delete " + f.file_name, onclick: async () => {
          if (!confirm("Delete " + current + "/" + f.file_name + "?")) return;
          try {
            await KF.api("DELETE", "/file/" + path(f));
            $("files-status").textContent = "Deleted " + f.file_name + ".";
            await loadFiles();
          } catch (e) { KF.notice(e.message); }
        } }, "Delete"))))));
    $("files-empty").hidden = files.length > 0;
  }

  $("new-dir").addEventListener("click", async () => {
    try {
      const d = (await KF.api("POST", "/directory", {})).directory;
      await open(d.id);
      $("files-status").textContent = "Created directory " + d.id + ".";
    } catch (e) { KF.notice(e.message); }
  });

  $("upload-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const file = $("upload-file").files[0];
    if (!file) { $("files-status").textContent = "Choose a file first."; return; }
    try {
      await KF.storeFile("ffmpeg-api", file, { dir_id: current },
        (f) => { $("files-status").textContent = "Uploading: " + Math.round(f * 100) + " %"; });
      $("files-status").textContent = "Uploaded " + file.name + ".";
      $("upload-file").value = "";
      await loadFiles();
    } catch (e) { KF.notice(e.message); }
  });

  loadDirs().then(() => { if (current) open(current); }).catch((e) => KF.notice(e.message));
});
