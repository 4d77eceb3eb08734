// The board page: cards kept live from the daemon's feed (Server-Sent Events), and the
// reviewer's actions as compare-and-set POSTs. Text from clients (task ids, branches,
// descriptions, reasons, activities) only ever goes into textContent, never into markup.
"use strict";

(() => {
  const boardEl = document.getElementById("board");
  const alertsEl = document.getElementById("alerts");
  const connectionEl = document.getElementById("connection");
  const headEl = document.getElementById("head");
  const detailEl = document.getElementById("detail");
  const detailTitle = document.getElementById("detail-title");
  const historyEl = document.getElementById("history");
  const logoutForm = document.querySelector("form.logout");

  let layout = null; // {columns, transitions, can_write, user, now_ms}
  let clockOffsetMs = 0; // the daemon's clock minus this browser's
  let lastEventId = null; // the revision the page has everything up to
  let openTask = null; // whose history is shown
  const cards = new Map(); // task id -> card element
  const columns = new Map(); // state -> {section, list, count}

  // -- small helpers ---------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function age(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d";
  }

  function setConnection(state, text) {
    connectionEl.dataset.connection = state;
    connectionEl.textContent = text;
  }

  function showAlert(text) {
    alertsEl.replaceChildren();
    const box = el("div", "alert", null);
    box.setAttribute("role", "alert");
    box.append(el("span", null, text));
    const dismiss = el("button", null, "Dismiss");
    dismiss.type = "button";
    dismiss.addEventListener("click", () => box.remove());
    box.append(dismiss);
    alertsEl.append(box);
  }

  // -- columns and cards -----------------------------------------------------------------

  function buildColumns() {
    if (columns.size) return;
    for (const state of layout.columns) {
      const section = el("section", "column");
      section.dataset.column = state;
      section.dataset.count = "0";
      const title = el("h2", null, state);
      const count = el("span", "count", "0");
      title.append(count);
      const list = el("div", "cards");
      section.append(title, list);
      boardEl.append(section);
      columns.set(state, { section, list, count });
    }
  }

  function recount(states) {
    for (const state of states) {
      const column = columns.get(state);
      if (!column) continue;
      const n = String(column.list.childElementCount);
      if (column.section.dataset.count !== n) {
        column.section.dataset.count = n;
        column.count.textContent = n;
      }
    }
  }

  function newCard(taskId) {
    const card = el("article", "card");
    card.dataset.taskId = taskId;
    const title = el("div", "title");
    const task = el("button", "task", taskId);
    task.type = "button";
    task.dataset.openHistory = "";
    task.title = "Show history";
    title.append(task, el("span", "level"));
    const meta = el("div", "meta");
    meta.append(el("span", "age"), el("span", "activity"));
    card.append(title, el("div", "branch"), el("p", "description"), meta);
    return card;
  }

  function actions(card, state) {
    card.querySelector(".actions")?.remove();
    const targets = layout.can_write ? layout.transitions[state] || [] : [];
    if (!targets.length) return;
    const box = el("div", "actions");
    const reason = el("input");
    reason.name = "reason";
    reason.placeholder = "reason (optional)";
    reason.maxLength = 4096;
    box.append(reason);
    for (const target of targets) {
      const button = el("button", null, "→ " + target);
      button.type = "button";
      button.dataset.action = target;
      box.append(button);
    }
    card.append(box);
  }

  function setLevel(card, level) {
    if (card.dataset.staleLevel !== level) {
      card.dataset.staleLevel = level;
      card.querySelector(".level").textContent = level;
    }
  }

  function setActivity(card, activity) {
    const node = card.querySelector(".activity");
    const text = activity ?? "";
    if (node.textContent !== text) node.textContent = text;
  }

  function setAge(card, now) {
    const text = age(now - Number(card.dataset.stateSinceMs));
    const node = card.querySelector(".age");
    if (node.textContent !== text) node.textContent = text;
  }

  // Put a card where its worker now is; `touched` collects columns to recount. A card older
  // than the one shown (the answer to a click that the feed already overtook) is ignored.
  function upsert(data, touched, atTop) {
    let card = cards.get(data.task_id);
    if (card && Number(card.dataset.revision) > data.revision) return;
    if (!card) {
      card = newCard(data.task_id);
      cards.set(data.task_id, card);
    }
    const moved = card.dataset.state !== data.state;
    if (moved && card.dataset.state) touched.add(card.dataset.state);
    card.dataset.state = data.state;
    card.dataset.revision = String(data.revision);
    card.dataset.stateSince = new Date(data.state_since_ms).toISOString();
    card.dataset.stateSinceMs = String(data.state_since_ms);
    card.querySelector(".branch").textContent = data.branch;
    card.querySelector(".description").textContent = data.description ?? "";
    setLevel(card, data.level);
    setActivity(card, data.activity);
    setAge(card, Date.now() + clockOffsetMs);
    if (moved || !card.isConnected) {
      actions(card, data.state);
      const list = columns.get(data.state).list;
      if (atTop) list.prepend(card);
      else list.append(card);
      touched.add(data.state);
    }
  }

  function reset(list) {
    for (const column of columns.values()) column.list.replaceChildren();
    cards.clear();
    const touched = new Set(layout.columns);
    for (const data of list) upsert(data, touched, false); // the snapshot is newest first
    recount(touched);
  }

  function changes(batch) {
    const touched = new Set();
    for (const data of batch.cards) upsert(data, touched, true);
    recount(touched);
    if (openTask !== null && batch.stored.includes(openTask)) loadHistory(openTask);
  }

  // A page back from an outage: levels and activities as they are now (the others are ok,
  // with no activity).
  function levels(map) {
    for (const [taskId, card] of cards) {
      const [level, activity] = map[taskId] || ["ok", null];
      setLevel(card, level);
      setActivity(card, activity);
    }
  }

  function activities(map) {
    for (const [taskId, activity] of Object.entries(map)) {
      const card = cards.get(taskId);
      if (card) setActivity(card, activity);
    }
  }

  setInterval(() => {
    const now = Date.now() + clockOffsetMs;
    for (const card of cards.values()) setAge(card, now);
  }, 1000);

  // -- the feed --------------------------------------------------------------------------

  let source = null;

  function remember(event) {
    if (event.lastEventId) {
      lastEventId = event.lastEventId;
      headEl.textContent = "revision " + lastEventId;
    }
  }

  function connect() {
    const url = lastEventId === null ? "/api/events" : "/api/events?after=" + lastEventId;
    source = new EventSource(url);
    source.addEventListener("layout", (event) => {
      layout = JSON.parse(event.data);
      clockOffsetMs = layout.now_ms - Date.now();
      logoutForm.hidden = layout.user === null;
      buildColumns();
      setConnection("live", "live");
    });
    source.addEventListener("reset", (event) => {
      reset(JSON.parse(event.data));
      remember(event);
    });
    source.addEventListener("changes", (event) => {
      changes(JSON.parse(event.data));
      remember(event);
    });
    source.addEventListener("levels", (event) => levels(JSON.parse(event.data)));
    source.addEventListener("activity", (event) => activities(JSON.parse(event.data)));
    source.addEventListener("error", () => {
      setConnection("reconnecting", "reconnecting…");
      // EventSource retries network errors itself (sending Last-Event-ID); an HTTP error
      // closes it for good, so look at why and open a new one.
      if (source.readyState === EventSource.CLOSED) setTimeout(reopen, 1000);
    });
  }

  async function reopen() {
    try {
      const answer = await fetch("/api/session", { credentials: "same-origin" });
      if (answer.status === 401) {
        location.reload(); // the session ended: show the login form
        return;
      }
    } catch (_) {
      // the daemon is away: try again below
    }
    connect();
  }

  // -- actions ---------------------------------------------------------------------------

  async function act(card, target, button) {
    const state = card.dataset.state;
    const revision = Number(card.dataset.revision);
    const reason = card.querySelector('input[name="reason"]')?.value ?? "";
    const buttons = card.querySelectorAll("[data-action]");
    buttons.forEach((b) => (b.disabled = true));
    let answer;
    try {
      answer = await fetch("/api/transition", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          task_id: card.dataset.taskId,
          from_state: "WORKER_STATE_" + state,
          to_state: "WORKER_STATE_" + target,
          expected_revision: revision,
          reason,
        }),
      });
    } catch (_) {
      showAlert("The daemon could not be reached; nothing was changed.");
      buttons.forEach((b) => (b.disabled = false));
      return;
    }
    const body = await answer.json().catch(() => ({}));
    if (answer.ok) {
      const touched = new Set();
      upsert(body.card, touched, true);
      recount(touched);
      alertsEl.replaceChildren();
    } else if (body.reason === "STALE_STATE") {
      const m = body.metadata;
      showAlert(
        `Nothing changed: ${m.task_id} is ${m.actual_state} (revision ${m.revision}), ` +
          `not ${state} at revision ${revision}.`,
      );
    } else {
      showAlert(`Not changed: ${body.message || "the daemon answered " + answer.status}`);
    }
    if (button.isConnected) buttons.forEach((b) => (b.disabled = false));
  }

  // -- history ---------------------------------------------------------------------------

  async function loadHistory(taskId) {
    const answer = await fetch("/api/history?task_id=" + encodeURIComponent(taskId), {
      credentials: "same-origin",
    });
    const body = await answer.json().catch(() => ({}));
    if (openTask !== taskId) return; // another card was opened meanwhile
    if (!answer.ok) {
      showAlert(body.message || "The history could not be read.");
      return;
    }
    const items = body.events.map((event) => {
      const item = el("li");
      item.dataset.revision = String(event.revision);
      item.append(
        el("div", "when", `${new Date(event.time_ms).toISOString()} · revision ${event.revision}`),
        el("div", "move", `${event.from_state ?? "(new)"} → ${event.to_state}`),
        el("div", "reason", event.reason),
      );
      return item;
    });
    historyEl.dataset.history = taskId;
    historyEl.replaceChildren(...items);
  }

  function openHistory(taskId) {
    openTask = taskId;
    detailTitle.textContent = taskId;
    historyEl.replaceChildren();
    delete historyEl.dataset.history;
    detailEl.hidden = false;
    loadHistory(taskId);
  }

  document.getElementById("detail-close").addEventListener("click", () => {
    openTask = null;
    detailEl.hidden = true;
    delete historyEl.dataset.history;
  });

  boardEl.addEventListener("click", (event) => {
    const card = event.target.closest(".card");
    if (!card) return;
    const action = event.target.closest("[data-action]");
    if (action) act(card, action.dataset.action, action);
    else if (event.target.closest("[data-open-history]")) openHistory(card.dataset.taskId);
  });

  connect();
})();
