"use strict";
// Jobs list: GET /ui/api/jobs (the /api/jobs objects, filtered by status and pool), polled.
document.addEventListener("DOMContentLoaded", () => {
  if (!KF.requireKey()) return;
  const PAGE = 25;
  const q = new URLSearchParams(location.search);
  const status = KF.$("filter-status"), pool = KF.$("filter-pool");
  status.value = q.get("status") || "";
  let offset = Math.max(0, parseInt(q.get("offset") || "0", 10) || 0);
  let pools = null;

  function setQuery() {
    const p = new URLSearchParams();
    if (status.value) p.set("status", status.value);
    if (pool.value) p.set("pool", pool.value);
    if (offset) p.set("offset", String(offset));
    history.replaceState(null, "", location.pathname + (p.toString() ? "?" + p : ""));
  }

  function row(job) {
    const pct = KF.percentOf(job);
    const step = job.progress && job.progress.steps > 1 ? " · step " + job.progress.step + "/" + job.progress.steps : "";
    return KF.el("tr", { "data-job": job.id },
      KF.el("td", {}, KF.el("a", { href: "/ui/jobs/" + encodeURIComponent(job.id) }, job.id)),
      KF.el("td", {}, KF.badge(job.status)),
      KF.el("td", {}, KF.progressBar(pct, "Progress of " + job.id), KF.el("span", { class: "muted small" }, step)),
      KF.el("td", {}, job.machine),
      KF.el("td", {}, KF.el("time", { datetime: job.created_at }, KF.when(job.created_at))),
      KF.el("td", {}, KF.elapsed(job)));
  }

  async function refresh() {
    const p = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (status.value) p.set("status", status.value);
    if (pool.value) p.set("pool", pool.value);
    const list = await KF.api("GET", "/ui/api/jobs?" + p);
    if (pools === null) {
      pools = list.pools;
      for (const name of pools) pool.append(KF.el("option", { value: name }, name));
      pool.value = q.get("pool") || "";
    }
    KF.clear(KF.$("jobs-body")).append(...list.data.map(row));
    KF.$("jobs-empty").hidden = list.data.length > 0;
    KF.$("jobs-count").textContent = list.total + (list.total === 1 ? " job" : " jobs");
    KF.$("prev").disabled = offset === 0;
    KF.$("next").disabled = offset + PAGE >= list.total;
    KF.$("page-info").textContent = list.total ? (offset + 1) + "–" + Math.min(offset + PAGE, list.total) + " of " + list.total : "";
    KF.notice("");
    return false;
  }

  const updates = KF.live({ refresh, interval: 2000 });
  const changed = () => { offset = 0; setQuery(); updates.refresh(); };
  status.addEventListener("change", changed);
  pool.addEventListener("change", changed);
  KF.$("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); setQuery(); updates.refresh(); });
  KF.$("next").addEventListener("click", () => { offset += PAGE; setQuery(); updates.refresh(); });
});
