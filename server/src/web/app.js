// pipe server web UI: live runs list, run page (DAG states, log streaming with ANSI colours
// and ::group:: folding, outputs, step summaries, results and promotion sections refreshed as
// jobs finish). No dependencies, no external requests.
"use strict";

(function () {
  const POLL_RUN_MS = 700;
  const POLL_LOG_MS = 400;
  const POLL_LIST_MS = 2000;

  async function getJSON(url) {
    const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) { location.href = "/ui/login"; throw new Error("signed out"); }
    if (!r.ok) throw new Error(url + ": " + r.status);
    return r.json();
  }

  async function getText(url) {
    const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) throw new Error(url + ": " + r.status);
    return r.text();
  }

  // ---- runs list -------------------------------------------------------------------------
  function liveList(tbody) {
    const url = tbody.dataset.live;
    setInterval(async () => {
      try { tbody.innerHTML = await getText(url); } catch (e) { /* retry on the next tick */ }
    }, POLL_LIST_MS);
  }

  // ---- ANSI ------------------------------------------------------------------------------
  // SGR state → a span. Colours 0-15 are classes (the stylesheet's palette); 256-colour and
  // truecolour values are set through the CSSOM (allowed by the page's CSP).
  const PALETTE_256 = (function () {
    const p = [];
    const base = ["#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
      "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff"];
    for (const c of base) p.push(c);
    const lv = [0, 95, 135, 175, 215, 255];
    for (let r = 0; r < 6; r++) for (let g = 0; g < 6; g++) for (let b = 0; b < 6; b++)
      p.push("rgb(" + lv[r] + "," + lv[g] + "," + lv[b] + ")");
    for (let i = 0; i < 24; i++) { const v = 8 + i * 10; p.push("rgb(" + v + "," + v + "," + v + ")"); }
    return p;
  })();

  function freshSgr() { return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false }; }

  function applySgr(st, params) {
    const ps = params.length ? params.split(";").map((x) => (x === "" ? 0 : parseInt(x, 10))) : [0];
    for (let i = 0; i < ps.length; i++) {
      const p = ps[i];
      if (p === 0) Object.assign(st, freshSgr());
      else if (p === 1) st.bold = true;
      else if (p === 2) st.dim = true;
      else if (p === 3) st.italic = true;
      else if (p === 4) st.underline = true;
      else if (p === 22) { st.bold = false; st.dim = false; }
      else if (p === 23) st.italic = false;
      else if (p === 24) st.underline = false;
      else if (p >= 30 && p <= 37) st.fg = p - 30;
      else if (p >= 90 && p <= 97) st.fg = p - 90 + 8;
      else if (p === 39) st.fg = null;
      else if (p >= 40 && p <= 47) st.bg = p - 40;
      else if (p >= 100 && p <= 107) st.bg = p - 100 + 8;
      else if (p === 49) st.bg = null;
      else if ((p === 38 || p === 48) && ps[i + 1] === 5 && ps[i + 2] !== undefined) {
        const c = PALETTE_256[ps[i + 2]] || null;
        if (p === 38) st.fg = c; else st.bg = c;
        i += 2;
      } else if ((p === 38 || p === 48) && ps[i + 1] === 2 && ps[i + 4] !== undefined) {
        const c = "rgb(" + ps[i + 2] + "," + ps[i + 3] + "," + ps[i + 4] + ")";
        if (p === 38) st.fg = c; else st.bg = c;
        i += 4;
      }
    }
  }

  function styled(text, st) {
    const plain = st.fg === null && st.bg === null && !st.bold && !st.dim && !st.italic && !st.underline;
    if (plain) return document.createTextNode(text);
    const s = document.createElement("span");
    s.textContent = text;
    if (typeof st.fg === "number") s.classList.add("fg" + st.fg); else if (st.fg) s.style.color = st.fg;
    if (typeof st.bg === "number") s.classList.add("bg" + st.bg); else if (st.bg) s.style.backgroundColor = st.bg;
    if (st.bold) s.classList.add("b");
    if (st.dim) s.classList.add("dim");
    if (st.italic) s.classList.add("i");
    if (st.underline) s.classList.add("u");
    return s;
  }

  // Renders one line (without its newline) into `el`, carrying the SGR state across lines.
  function renderAnsi(el, line, st) {
    const re = /\x1b\[([0-9;]*)([A-Za-z])/g;
    let last = 0, m;
    while ((m = re.exec(line)) !== null) {
      if (m.index > last) el.appendChild(styled(line.slice(last, m.index), st));
      if (m[2] === "m") applySgr(st, m[1]);
      last = re.lastIndex;
    }
    if (last < line.length) el.appendChild(styled(line.slice(last), st));
  }

  // ---- log view ----------------------------------------------------------------------------
  // Lines are appended as they come. `::group::TITLE` opens a fold (a <details>) and
  // `::endgroup::` closes it; pipe's plain log (what agents ship) writes them as
  // `[job] ▸ TITLE` and `[job] ◂ end of group`. A step's `Run ...` header closes an open fold.
  const GROUP_RAW = /^(?:\[[^\]]*\] )?::group::(.*)$/;
  const ENDGROUP_RAW = /^(?:\[[^\]]*\] )?::endgroup::\s*$/;
  const GROUP_PLAIN = /^(?:\[[^\]]*\] )?\u25b8 (.*)$/;
  const ENDGROUP_PLAIN = /^(?:\[[^\]]*\] )?\u25c2 end of group$/;
  const STEP_START = /^(?:\[[^\]]*\] )?Run /;

  function LogView(el) {
    this.el = el;
    this.clear();
  }
  LogView.prototype.clear = function () {
    this.el.textContent = "";
    this.partial = "";
    this.sgr = freshSgr();
    this.target = this.el;
    this.group = null;
    this.lines = 0;
  };
  LogView.prototype.openGroup = function (title, plain) {
    this.closeGroup();
    const d = document.createElement("details");
    d.className = "group";
    const s = document.createElement("summary");
    renderAnsi(s, title, freshSgr());
    d.appendChild(s);
    const body = document.createElement("div");
    body.className = "group-body";
    d.appendChild(body);
    this.el.appendChild(d);
    this.group = { el: d, body: body, plain: plain };
    this.target = body;
  };
  LogView.prototype.closeGroup = function () {
    this.group = null;
    this.target = this.el;
  };
  LogView.prototype.line = function (text) {
    let m;
    if ((m = GROUP_RAW.exec(text)) !== null) { this.openGroup(m[1], false); return; }
    if (ENDGROUP_RAW.test(text)) { this.closeGroup(); return; }
    if ((m = GROUP_PLAIN.exec(text)) !== null) { this.openGroup(m[1], true); return; }
    if (ENDGROUP_PLAIN.test(text)) { this.closeGroup(); return; }
    if (this.group && this.group.plain && STEP_START.test(text)) this.closeGroup();
    const div = document.createElement("div");
    div.className = "line";
    renderAnsi(div, text, this.sgr);
    this.target.appendChild(div);
    this.lines++;
  };
  LogView.prototype.write = function (chunk) {
    const text = this.partial + chunk;
    const parts = text.split("\n");
    this.partial = parts.pop();
    const stick = this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - 4;
    for (const p of parts) this.line(p.replace(/\r$/, ""));
    if (stick) this.el.scrollTop = this.el.scrollHeight;
  };
  LogView.prototype.end = function () {
    if (this.partial) { this.line(this.partial); this.partial = ""; }
  };

  // ---- run page ----------------------------------------------------------------------------
  function runPage(root) {
    const runId = root.dataset.run;
    const panel = document.getElementById("panel");
    const view = new LogView(document.getElementById("log"));
    let jobs = {};
    let selected = null;
    let logTimer = null;
    let cursor = { after: -1, attempt: null, done: false, job: null };
    let runDone = false;
    let doneJobs = null;
    let wasRunning = false;

    // Replaces a server-rendered section (`id`) with a fresh copy from `url`.
    async function refreshSection(id, url) {
      try {
        const html = await getText(url);
        const old = document.getElementById(id);
        if (!old) return;
        const t = document.createElement("template");
        t.innerHTML = html.trim();
        const fresh = t.content.firstElementChild;
        if (fresh && fresh.id === id) old.replaceWith(fresh);
      } catch (e) { /* kept as it was */ }
    }

    function cardOf(id) { return document.getElementById("job-" + id); }

    function setCard(j) {
      const c = cardOf(j.id);
      if (!c) return;
      const cls = j.state === "done" ? (j.result || "done") : (j.state === "leased" ? "running" : j.state);
      c.className = "job " + cls + (selected === j.id ? " selected" : "");
      const s = c.querySelector(".state");
      if (s && s.textContent !== j.label) s.textContent = j.label;
    }

    function setBadge(el, state, conclusion) {
      const t = state === "done" && conclusion ? conclusion : state;
      el.className = "badge " + t;
      el.textContent = t;
    }

    function showOutputs(j) {
      const tb = document.querySelector("#outputs tbody");
      tb.textContent = "";
      const keys = Object.keys(j.outputs || {});
      if (!keys.length) {
        const tr = tb.insertRow(); const td = tr.insertCell(); td.className = "empty"; td.textContent = "none";
        return;
      }
      for (const k of keys) {
        const tr = tb.insertRow();
        const a = tr.insertCell(); a.textContent = k;
        const b = tr.insertCell(); b.textContent = j.outputs[k];
      }
    }

    async function loadSummary(id) {
      try {
        const html = await getText("/ui/jobs/" + id + "/summary");
        if (selected === id) document.getElementById("summary").innerHTML = html;
      } catch (e) { /* shown on the next selection */ }
    }

    async function pollLog() {
      const id = selected;
      if (id === null || cursor.done) return;
      try {
        let url = "/ui/api/jobs/" + id + "/log?after=" + cursor.after;
        if (cursor.attempt !== null) url += "&attempt=" + cursor.attempt;
        const l = await getJSON(url);
        if (selected !== id) return;
        if (l.reset) { view.clear(); cursor.after = -1; }
        cursor.attempt = l.attempt;
        document.getElementById("panel-attempt").textContent = l.attempt > 0 ? "attempt " + l.attempt : "";
        for (const [off, text] of l.chunks) {
          view.write(text);
          cursor.after = off;
        }
        if (l.done) {
          view.end();
          cursor.done = true;
          loadSummary(id);
          if (jobs[id]) showOutputs(jobs[id]);
          return;
        }
      } catch (e) { /* retry */ }
      logTimer = setTimeout(pollLog, POLL_LOG_MS);
    }

    function select(id, push) {
      if (logTimer) clearTimeout(logTimer);
      const prev = selected !== null ? cardOf(selected) : null;
      if (prev) prev.classList.remove("selected");
      selected = id;
      const c = cardOf(id);
      if (c) c.classList.add("selected");
      panel.hidden = false;
      document.getElementById("panel-title").textContent = c ? c.dataset.key : "job " + id;
      const j = jobs[id];
      if (j) setBadge(document.getElementById("panel-state"), j.state === "leased" ? "running" : j.state, j.result);
      document.getElementById("summary").innerHTML = "<p class=\"empty\">none yet</p>";
      document.querySelector("#outputs tbody").textContent = "";
      view.clear();
      cursor = { after: -1, attempt: null, done: false, job: id };
      if (push) history.replaceState(null, "", "?job=" + id);
      pollLog();
    }

    document.getElementById("dag").addEventListener("click", (ev) => {
      const a = ev.target.closest("a.job");
      if (!a) return;
      ev.preventDefault();
      select(parseInt(a.dataset.job, 10), true);
    });

    async function pollRun() {
      try {
        const r = await getJSON("/ui/api/runs/" + runId);
        const map = {};
        for (const j of r.jobs) { map[j.id] = j; setCard(j); }
        jobs = map;
        setBadge(document.querySelector("#run-state .badge") || document.getElementById("run-state"), r.state, r.conclusion);
        if (selected !== null && jobs[selected]) {
          const j = jobs[selected];
          setBadge(document.getElementById("panel-state"), j.state === "leased" ? "running" : j.state, j.result);
          if (cursor.done && j.state !== "done") { cursor.done = false; pollLog(); }
          if (j.state === "done") showOutputs(j);
        }
        if (selected === null && r.jobs.length) {
          const want = new URLSearchParams(location.search).get("job");
          const pick = (want && jobs[want]) ? parseInt(want, 10)
            : (r.jobs.find((j) => j.state === "leased") || r.jobs[0]).id;
          select(pick, false);
        }
        // Results arrive with each finished job; the build is known once the run is done.
        const done = r.jobs.filter((j) => j.state === "done").length;
        if (doneJobs !== null && done !== doneJobs) refreshSection("results", "/ui/runs/" + runId + "/results");
        doneJobs = done;
        if (r.state !== "done") wasRunning = true;
        else if (wasRunning) refreshSection("promotion", "/ui/runs/" + runId + "/promotion");
        runDone = r.state === "done";
      } catch (e) { /* retry */ }
      if (!runDone) setTimeout(pollRun, POLL_RUN_MS);
    }
    pollRun();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const list = document.querySelector("tbody[data-live]");
    if (list) liveList(list);
    const run = document.getElementById("run");
    if (run) runPage(run);
  });

  // For tests of the renderer (node or the browser console).
  window.pipeLog = { LogView: LogView, renderAnsi: renderAnsi, freshSgr: freshSgr };
})();
