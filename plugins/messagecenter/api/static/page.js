"use strict";
// The Message Center page: fetches api/overview (Airflow's session cookie authenticates it) and
// draws it. No framework, no build step; the chart is vendored uPlot.
const COLORS = {"Sent": "#2da44e", "Ignored by the delivery": "#bf8700", "Delivery failed": "#cf222e",
  "Event not taken into account": "#8250df", "Event expired": "#57606a"};
const plots = [];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

function metricCell(queue, name, metric, unit) {
  return el("td", {"class": `num level-${metric.level}`, "data-metric": `${queue}.${name}`,
    "data-value": String(metric.value),
    "title": `warning at ${metric.thresholds[0]}${unit}, alert at ${metric.thresholds[1]}${unit}`},
    `${metric.value}${unit}`);
}

function indicators(inst) {
  const body = el("tbody");
  for (const [queue, m] of Object.entries(inst.queues)) {
    body.append(el("tr", {}, el("th", {text: queue}),
      metricCell(queue, "pending", m.pending, ""),
      metricCell(queue, "queue_seconds", m.queue_seconds, " s"),
      metricCell(queue, "processing_seconds", m.processing_seconds, " s"),
      metricCell(queue, "error_rate_percent", m.error_rate_percent, " %")));
  }
  return el("table", {"class": "indicators"}, el("thead", {}, el("tr", {},
    ...["Queue", "Pending", "Queue time", "Processing time", "Error rate"].map(t => el("th", {text: t})))), body);
}

function statuses(inst) {
  const labels = Object.keys(inst.status_last_hour.rt);
  const body = el("tbody");
  for (const [period, data] of [["hour", inst.status_last_hour], ["day", inst.status_last_day]]) {
    for (const queue of Object.keys(data)) {
      body.append(el("tr", {}, el("th", {text: `${queue}, last ${period}`}),
        ...labels.map(l => el("td", {"class": "num", "data-status": `${queue}.${period}.${l}`,
          text: String(data[queue][l])}))));
    }
  }
  return el("table", {"class": "statuses"},
    el("thead", {}, el("tr", {}, el("th", {text: "Events received"}), ...labels.map(l => el("th", {text: l})))), body);
}

function plot(inst, container) {
  const names = Object.keys(inst.throughput.series);
  const data = [inst.throughput.minutes, ...names.map(n => inst.throughput.series[n])];
  const opts = {
    title: "Events per minute by final status (6 h)", width: Math.min(900, window.innerWidth - 60), height: 220,
    series: [{}, ...names.map(n => ({label: n, stroke: COLORS[n] || "#0969da", width: 1.5}))],
    axes: [{}, {label: "events / min"}],
  };
  plots.push(new uPlot(opts, data, container));
}

function heartbeats(inst) {
  const body = el("tbody");
  for (const hb of inst.heartbeats) {
    // Stopped (ran, then no heartbeat): red; a technical workflow never started: amber, the instance
    // waits for it; mcCleanup and bounceProcessing that never ran: no colour (daily, optional).
    const level = inst.workflows.stopped.includes(hb.workflow) ? "level-alert"
      : inst.workflows.waiting.includes(hb.workflow) ? "level-warning" : hb.last_run ? "level-ok" : "level-none";
    body.append(el("tr", {"data-workflow": hb.workflow, "class": level},
      el("td", {text: hb.workflow}), el("td", {text: hb.last_run ? `${age(hb.age_seconds)} ago` : "never"}),
      el("td", {"class": "num", text: hb.last_rows ?? "–"}), el("td", {"class": "num", text: hb.runs ?? "0"})));
  }
  return el("table", {"class": "heartbeats"}, el("thead", {}, el("tr", {},
    ...["Workflow", "Last run", "Rows", "Runs"].map(t => el("th", {text: t})))), body);
}

function workflowsState(inst) {
  // A banner when the instance is not running: waiting to be started (amber) or stopped (red).
  const w = inst.workflows;
  const level = {waiting: "warning", stopped: "alert"}[w.state];
  const title = {waiting: "Waiting for its workflows to start", stopped: "Workflows stopped"}[w.state];
  return el("p", {"class": `instance-state level-${level}`, "data-state": w.state},
    el("strong", {text: `${title}. `}), w.message);
}

function percent(value) {
  return `${value} %`;
}

function feedback(inst) {
  const f = inst.feedback;
  const hours = Math.round(f.window_seconds / 3600);
  const rate = (name, metric, count, extra) => el("td", {"class": `num level-${metric.level}`,
    "data-metric": `feedback.${name}`, "data-value": String(metric.value),
    "title": `warning at ${percent(metric.thresholds[0])}, alert at ${percent(metric.thresholds[1])}${extra}`},
    `${percent(metric.value)} (${count})`);
  const line = `Gmail and Yahoo require bulk senders to stay under ${percent(f.complaint_line_percent)}`;
  const rates = el("table", {"class": "feedback-rates"},
    el("thead", {}, el("tr", {}, ...["Sent", "Bounce rate", "Complaint rate", "Unmatched feedback"]
      .map(t => el("th", {text: t})))),
    el("tbody", {}, el("tr", {},
      el("td", {"class": "num", "data-feedback": "sent", text: String(f.sent)}),
      rate("bounce_rate_percent", f.bounce_rate_percent, f.bounced, ""),
      rate("complaint_rate_percent", f.complaint_rate_percent, f.complained, `; ${line}`),
      el("td", {"class": "num", "data-feedback": "unmatched", text: String(f.unmatched)}))));
  const complaintLine = el("p", {"class": "note complaint-line"},
    `Complaint rate: ${line}; alert here at ${percent(f.complaint_rate_percent.thresholds[1])}, ` +
    `warning at ${percent(f.complaint_rate_percent.thresholds[0])}.`);

  const statuses = Object.keys(f.quarantine.totals);
  const label = s => s.replace("_", " ").replace(/^./, c => c.toUpperCase());
  const quarantine = f.quarantine.by_reason.length === 0
    ? el("p", {"class": "quarantine-empty", text: "No address in quarantine."})
    : el("table", {"class": "quarantine"},
      el("thead", {}, el("tr", {}, el("th", {text: "Quarantine by reason"}), ...statuses.map(s => el("th", {text: label(s)})))),
      el("tbody", {}, ...f.quarantine.by_reason.map(row => el("tr", {"data-reason": row.reason},
        el("th", {text: row.reason}),
        ...statuses.map(s => el("td", {"class": "num", "data-status": s, text: String(row[s])}))))),
      el("tfoot", {}, el("tr", {}, el("th", {text: "All reasons"}),
        ...statuses.map(s => el("td", {"class": "num", "data-total": s, text: String(f.quarantine.totals[s])})))));

  const texts = f.unqualified.top.length === 0
    ? el("p", {"class": "unqualified-none", text: "Every feedback text matched a rule."})
    : el("ol", {"class": "unqualified"}, ...f.unqualified.top.map(t => el("li", {"title": t.example},
      el("span", {"class": "count", text: `${t.occurrences} ×`}), " ", el("code", {text: t.text}))));
  return el("div", {"class": "feedback"},
    el("h3", {text: `Delivery feedback (last ${hours} h)`}), rates, complaintLine, quarantine,
    el("h4", {text: `Texts no rule qualified (${f.unqualified.count})`}), texts,
    el("p", {"class": "note"}, "List them with ", el("code", {text: "python -m messagecenter feedback texts --unqualified"}),
      "; qualify one with ", el("code", {text: "python -m messagecenter feedback rule-add"}), "."));
}

function archiving(inst, canCreate) {
  const a = inst.archiving;
  const lagLevel = a.lag_seconds === null ? "warning" :
    a.lag_seconds > 3 * a.lag_warning_seconds ? "alert" : a.lag_seconds > a.lag_warning_seconds ? "warning" : "ok";
  const box = el("div", {"class": "archiving"},
    el("span", {text: `Archiving workflow ${a.dag_id}: ${a.state}. Lag: `}),
    el("span", {"class": `level-${lagLevel}`, "data-lag": inst.name,
      text: a.lag_seconds === null ? "nothing archived yet" : age(a.lag_seconds)}));
  if (a.state === "absent") {
    const button = el("button", {"type": "button", "class": "create-archiving", "data-instance": inst.name},
      "Create the archiving workflow");
    if (!canCreate) {
      button.disabled = true;
      button.title = "Only a user allowed to edit connections can create it";
    }
    button.addEventListener("click", () => createArchiving(inst.name, button));
    box.append(" ", button);
  }
  return box;
}

async function createArchiving(name, button) {
  button.disabled = true;
  const answer = await fetch(`api/archiving/${encodeURIComponent(name)}`, {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({instance: name})});
  const text = answer.ok ? `Archiving workflow ${(await answer.json()).dag_id} created: it appears in the DAG list within seconds.`
    : `Not created (${answer.status}): ${(await answer.json().catch(() => ({}))).detail || answer.statusText}`;
  document.getElementById("message").textContent = text;
  if (!answer.ok) button.disabled = false;
}

function render(data) {
  plots.splice(0).forEach(p => p.destroy());
  const root = document.getElementById("instances");
  root.replaceChildren();
  for (const inst of data.instances) {
    const section = el("section", {"class": "instance", "data-instance": inst.name},
      el("h2", {text: `Execution instance ${inst.name} (${inst.connection})`}));
    if (inst.error) {
      section.append(el("p", {"class": "error", text: `Unreachable: ${inst.error}`}));
    } else {
      const chart = el("div", {"class": "plot", "id": `plot-${inst.name}`});
      if (inst.workflows.state !== "started") section.append(workflowsState(inst));
      section.append(indicators(inst), statuses(inst), chart, el("h3", {text: "Workflow heartbeats"}), heartbeats(inst),
        feedback(inst));
      root.append(section);
      plot(inst, chart);
    }
    if (inst.archiving) section.append(archiving(inst, data.can_create_archiving));
    root.append(section);
  }
  const tbody = document.querySelector("#doctor tbody");
  tbody.replaceChildren(...data.doctor.findings.map(f => el("tr", {"class": `level-${f.level}`},
    el("td", {text: f.level}), el("td", {text: f.what}), el("td", {text: f.message}))));
  document.getElementById("doctor-verdict").textContent =
    ["Ready.", "Not ready: see the errors below.", "Ready, with warnings."][data.doctor.exit_code];
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  document.body.dataset.loaded = "true";
}

async function load() {
  const answer = await fetch("api/overview", {headers: {"Accept": "application/json"}});
  if (!answer.ok) {
    document.getElementById("message").textContent = `Cannot read the overview (${answer.status}): log in to Airflow.`;
    return;
  }
  render(await answer.json());
}

document.getElementById("refresh").addEventListener("click", load);
load();
setInterval(load, 30000);
