// The live cluster page: polls /api/cluster every second and redraws one column per node
// with its tasks. Every value from the cluster is set as text (never as HTML), so a
// service or node name cannot inject markup.
"use strict";

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function taskItem(t) {
  const li = el("li", "task state-" + t.state);
  li.dataset.task = t.id;
  li.dataset.state = t.state;
  li.append(el("span", "state", t.state));
  li.append(el("span", "name", t.name));
  li.append(el("span", "image", t.image));
  return li;
}

function nodeColumn(n) {
  const col = el("section", "node" + (n.status === "ready" ? "" : " down"));
  col.dataset.node = n.id;
  const title = el("h2", "", n.hostname);
  if (n.leader) title.append(el("span", "leader", "leader"));
  col.append(title);
  col.append(el("div", "facts", [n.role, n.status, n.availability].join(" · ")));
  const list = el("ul", "tasks");
  for (const t of n.tasks) list.append(taskItem(t));
  col.append(list);
  return col;
}

function render(cluster) {
  const nodes = document.getElementById("nodes");
  const columns = cluster.nodes.map(nodeColumn);
  if (cluster.unassigned.length > 0) {
    columns.push(nodeColumn({
      id: "", hostname: "not placed", role: "", status: "pending",
      availability: "", leader: false, tasks: cluster.unassigned,
    }));
  }
  nodes.replaceChildren(...columns);
  const tasks = cluster.nodes.reduce((sum, n) => sum + n.tasks.length, 0);
  document.getElementById("summary").textContent =
    cluster.nodes.length + " nodes, " + tasks + " tasks";
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    const response = await fetch("/api/cluster", { cache: "no-store" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || response.statusText);
    render(body);
    error.hidden = true;
  } catch (e) {
    error.textContent = "Cannot read the cluster: " + e.message;
    error.hidden = false;
  }
}

refresh();
setInterval(refresh, 1000);
