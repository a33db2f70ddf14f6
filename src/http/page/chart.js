// brook's charts: one variable's buckets (average, min and max per time
// bucket, as GET /devices/{name}/data?interval= answers) drawn as inline
// SVG. Our own small code: a time axis, a value axis with the unit, the
// average as a line over a band from min to max, and a hover readout. All
// text goes in with textContent.
"use strict";

const BrookChart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const MINUTE = 60e3;
  const HOUR = 60 * MINUTE;
  const DAY = 24 * HOUR;
  /** Time-axis steps, smallest first: the first whose labels fit is used. */
  const TIME_STEPS = [
    MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
    HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY,
  ];
  const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  /** Width of one character of the axis font (11 px), with some slack. */
  const CHAR_PX = 6.6;
  /** A gap between buckets this many times the usual one breaks the line. */
  const GAP_FACTOR = 5;

  function svg(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  const pad = (n) => String(n).padStart(2, "0");

  /** A number as people read it: about 3 significant digits, no trailing zeros. */
  function formatValue(v) {
    if (typeof v !== "number" || !isFinite(v)) return String(v);
    const a = Math.abs(v);
    let s;
    if (a >= 1e6 || (a > 0 && a < 1e-3)) s = v.toExponential(2);
    else if (a >= 100) s = v.toFixed(Number.isInteger(v) ? 0 : 1);
    else if (a >= 1) s = v.toFixed(2);
    else s = v.toPrecision(3);
    if (s.includes(".") && !s.includes("e")) s = s.replace(/\.?0+$/, "");
    return s;
  }

  /** A tick label for a value with `step` between ticks: as many decimals as the step has. */
  function tickLabel(v, step) {
    let decimals = 0;
    while (decimals < 6 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6) decimals++;
    const s = v.toFixed(decimals);
    return s === "-0" ? "0" : s;
  }

  /** Round value ticks (1, 2, 2.5, 5 × 10^n apart) covering lo..hi. */
  function valueTicks(lo, hi, most) {
    const raw = (hi - lo) / Math.max(1, most);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    const first = Math.floor(lo / step + 1e-9) * step;
    const last = Math.ceil(hi / step - 1e-9) * step;
    const ticks = [];
    for (let v = first; v <= last + step / 2; v += step) ticks.push(v);
    return { ticks, step, lo: first, hi: last };
  }

  /** Local-time offset of instant t, ms (east of UTC is positive). */
  const offset = (t) => -new Date(t).getTimezoneOffset() * MINUTE;

  /** The label of a time tick: the clock within a day, the weekday beside it across days, the date for day steps. */
  function timeLabel(t, step, span) {
    const d = new Date(t);
    const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    if (step >= DAY) return `${MONTHS[d.getMonth()]} ${d.getDate()}`;
    if (span > 36 * HOUR) return `${WEEKDAYS[d.getDay()]} ${clock}`;
    return clock;
  }

  /** Time ticks on local-time multiples of a round step, as many as fit in `width` px. */
  function timeTicks(start, end, width) {
    const span = end - start;
    for (const step of TIME_STEPS) {
      const sample = timeLabel(end, step, span);
      const labelPx = sample.length * CHAR_PX + 18;
      if ((span / step) * labelPx > width) continue;
      const ticks = [];
      const from = start + offset(start);
      let t = Math.ceil(from / step) * step - offset(start);
      for (; t <= end; t += step) {
        // Day steps land on local midnight, also across a daylight-saving change.
        const fixed = step >= DAY ? t - (offset(t) - offset(start)) : t;
        if (fixed >= start && fixed <= end) ticks.push(fixed);
      }
      return { ticks, step };
    }
    return { ticks: [], step: span };
  }

  /**
   * Splits the points (sorted by time) where the gap to the previous one is
   * far longer than usual: a device that was silent for a while shows a hole,
   * not a straight line across it.
   */
  function segments(points, widthMs) {
    const gaps = [];
    for (let i = 1; i < points.length; i++) gaps.push(points[i].t - points[i - 1].t);
    gaps.sort((a, b) => a - b);
    const usual = gaps.length ? gaps[Math.floor(gaps.length / 2)] : widthMs;
    const limit = Math.max(usual, widthMs) * GAP_FACTOR;
    const out = [];
    let current = [];
    for (const p of points) {
      if (current.length && p.t - current[current.length - 1].t > limit) {
        out.push(current);
        current = [];
      }
      current.push(p);
    }
    if (current.length) out.push(current);
    return out;
  }

  /**
   * Draws one variable into `host` (an element the chart fills in width).
   * opts: {buckets: [{time, value, min, max, count}], start, end (ms),
   * widthMs (bucket width), unit, label (the variable), height (px)}.
   * Returns the number of points drawn.
   */
  function draw(host, opts) {
    const W = Math.max(220, Math.floor(host.clientWidth || 600));
    const H = opts.height || 180;
    const unit = opts.unit || "";
    const points = opts.buckets
      .map((b) => ({
        t: Date.parse(b.time) + opts.widthMs / 2,
        start: Date.parse(b.time),
        avg: b.value,
        min: b.min,
        max: b.max,
        count: b.count,
      }))
      .filter((p) => isFinite(p.t) && typeof p.avg === "number")
      .map((p) => ({ ...p, t: Math.min(Math.max(p.t, opts.start), opts.end) }));

    let lo = Math.min(...points.map((p) => p.min));
    let hi = Math.max(...points.map((p) => p.max));
    if (!points.length) {
      lo = 0;
      hi = 1;
    } else if (lo === hi) {
      const d = Math.abs(lo) * 0.05 || 1;
      lo -= d;
      hi += d;
    }
    const plotH = H - 18 - 24;
    const yt = valueTicks(lo, hi, Math.max(2, Math.floor(plotH / 28)));
    const yLabels = yt.ticks.map((v) => tickLabel(v, yt.step));
    const left = Math.ceil(Math.max(2, ...yLabels.map((s) => s.length), unit.length) * CHAR_PX) + 12;
    const m = { left, right: 12, top: 18, bottom: 24 };
    const pw = W - m.left - m.right;
    const ph = H - m.top - m.bottom;
    const x = (t) => m.left + ((t - opts.start) / (opts.end - opts.start)) * pw;
    const y = (v) => m.top + ph - ((v - yt.lo) / (yt.hi - yt.lo)) * ph;

    const root = svg("svg", {
      class: "chart-svg",
      width: W,
      height: H,
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-label": `${opts.label}${unit ? ` in ${unit}` : ""}, ${points.length} points`,
    });
    root.dataset.points = String(points.length);

    // Value axis: grid lines, tick labels and the unit above them.
    const yAxis = svg("g", { class: "axis y" });
    yt.ticks.forEach((v, i) => {
      const py = y(v).toFixed(1);
      yAxis.append(svg("line", { class: "grid", x1: m.left, x2: W - m.right, y1: py, y2: py }));
      yAxis.append(svg("text", { x: m.left - 6, y: py, dy: "0.32em", "text-anchor": "end" }, yLabels[i]));
    });
    yAxis.append(svg("text", { class: "unit", x: m.left - 6, y: 11, "text-anchor": "end" }, unit));
    root.append(yAxis);

    // Time axis: the baseline, ticks and their labels (kept inside the picture).
    const xAxis = svg("g", { class: "axis x" });
    const base = m.top + ph;
    xAxis.append(svg("line", { class: "base", x1: m.left, x2: W - m.right, y1: base, y2: base }));
    const tt = timeTicks(opts.start, opts.end, pw);
    for (const t of tt.ticks) {
      const px = x(t);
      const text = timeLabel(t, tt.step, opts.end - opts.start);
      const half = (text.length * CHAR_PX) / 2;
      xAxis.append(svg("line", { class: "tick", x1: px.toFixed(1), x2: px.toFixed(1), y1: base, y2: base + 4 }));
      if (px - half < 0 || px + half > W) continue;
      xAxis.append(svg("text", { x: px.toFixed(1), y: base + 16, "text-anchor": "middle" }, text));
    }
    root.append(xAxis);

    if (!points.length) {
      root.append(
        svg("text", { class: "empty", x: m.left + pw / 2, y: m.top + ph / 2, "text-anchor": "middle" }, "No readings in this range"),
      );
    }

    // The band from min to max, the line of averages, a dot for a lone point.
    const data = svg("g", { class: "series" });
    const line = [];
    for (const seg of segments(points, opts.widthMs)) {
      if (seg.length === 1) {
        const p = seg[0];
        data.append(svg("circle", { class: "lone", cx: x(p.t).toFixed(1), cy: y(p.avg).toFixed(1), r: 2.5 }));
      } else {
        const top = seg.map((p) => `${x(p.t).toFixed(1)},${y(p.max).toFixed(1)}`);
        const bottom = seg.map((p) => `${x(p.t).toFixed(1)},${y(p.min).toFixed(1)}`).reverse();
        data.append(svg("polygon", { class: "band", points: top.concat(bottom).join(" ") }));
      }
      line.push(seg.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)} ${y(p.avg).toFixed(1)}`).join(""));
    }
    data.append(svg("path", { class: "line", d: line.join("") }));
    if (points.length) {
      const last = points[points.length - 1];
      data.append(svg("circle", { class: "last", cx: x(last.t).toFixed(1), cy: y(last.avg).toFixed(1), r: 3 }));
    }
    root.append(data);

    // Hover (or touch): the nearest point, a guide line and a readout.
    const guide = svg("line", { class: "guide", y1: m.top, y2: base, visibility: "hidden" });
    const dot = svg("circle", { class: "hover", r: 4, visibility: "hidden" });
    const area = svg("rect", { class: "hit", x: m.left, y: m.top, width: pw, height: ph });
    root.append(guide, dot, area);
    host.replaceChildren(root);
    const tip = document.createElement("div");
    tip.className = "tip";
    tip.hidden = true;
    host.append(tip);

    const nearest = (px) => {
      let best = null;
      for (const p of points) {
        if (!best || Math.abs(x(p.t) - px) < Math.abs(x(best.t) - px)) best = p;
      }
      return best;
    };
    const show = (ev) => {
      const box = root.getBoundingClientRect();
      const p = nearest(ev.clientX - box.left);
      if (!p) return;
      const px = x(p.t);
      const py = y(p.avg);
      guide.setAttribute("x1", px);
      guide.setAttribute("x2", px);
      dot.setAttribute("cx", px);
      dot.setAttribute("cy", py);
      guide.setAttribute("visibility", "visible");
      dot.setAttribute("visibility", "visible");
      const when = new Date(p.start);
      const u = unit ? ` ${unit}` : "";
      const time = `${WEEKDAYS[when.getDay()]} ${MONTHS[when.getMonth()]} ${when.getDate()}, ${pad(when.getHours())}:${pad(when.getMinutes())}`;
      const range = p.count > 1 ? ` (${formatValue(p.min)} to ${formatValue(p.max)}, ${p.count} readings)` : "";
      tip.textContent = `${time} · ${formatValue(p.avg)}${u}${range}`;
      tip.hidden = false;
      const tw = tip.offsetWidth;
      tip.style.left = `${Math.max(0, Math.min(W - tw, px - tw / 2))}px`;
      tip.style.top = `${Math.max(0, py - 40)}px`;
    };
    const hide = () => {
      guide.setAttribute("visibility", "hidden");
      dot.setAttribute("visibility", "hidden");
      tip.hidden = true;
    };
    area.addEventListener("pointermove", show);
    area.addEventListener("pointerdown", show);
    area.addEventListener("pointerleave", hide);
    return points.length;
  }

  return { draw, formatValue };
})();
