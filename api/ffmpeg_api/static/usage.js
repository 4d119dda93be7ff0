"use strict";
// Usage: GET /usage (totals and jobs by status) and GET /ui/api/usage/daily (per day).
document.addEventListener("DOMContentLoaded", async () => {
  if (!KF.requireKey()) return;
  const fact = (dt, dd) => [KF.el("dt", {}, dt), KF.el("dd", {}, dd)];
  try {
    const [usage, daily] = await Promise.all([KF.api("GET", "/usage"), KF.api("GET", "/ui/api/usage/daily")]);
    const u = usage.usage;
    const byStatus = Object.entries(u.jobs_by_status).map(([k, v]) => k + " " + v).join(", ");
    KF.$("totals").append(
      ...fact("Tenant", usage.tenant), ...fact("Jobs", String(u.jobs) + (byStatus ? " (" + byStatus + ")" : "")),
      ...fact("FFmpeg time", KF.seconds(u.time_sec)), ...fact("Input", u.input_size_gb.toFixed(6) + " GB"),
      ...fact("Output", u.output_size_gb.toFixed(6) + " GB"), ...fact("gb_sec", u.gb_sec.toFixed(6)));
    // data-label: a phone shows each row as a card, each figure under its column's name.
    const num = (v, d, label) => KF.el("td", { class: "num", "data-label": label }, Number(v).toFixed(d));
    KF.$("days").append(...daily.days.map((d) => KF.el("tr", {},
      KF.el("th", { scope: "row" }, d.day), num(d.jobs, 0, "Jobs"), num(d.time_sec, 1, "FFmpeg time (s)"),
      num(d.input_size_gb, 6, "Input GB"), num(d.output_size_gb, 6, "Output GB"), num(d.gb_sec, 6, "gb_sec"))));
    KF.$("days-empty").hidden = daily.days.length > 0;
  } catch (e) {
    KF.notice(e.message);
  }
});
