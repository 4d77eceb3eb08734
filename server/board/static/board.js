// The board page: cards kept live from the daemon's feed (Server-Sent Events), and the
// reviewer's actions as compare-and-set POSTs. A label selector is applied by the daemon: the
// page reconnects its feed with it, and keeps it in the URL so a filtered board can be
// bookmarked. Text from clients (task ids, branches,
// descriptions, reasons, activities) only ever goes into textContent or attributes, never
// into markup.
"use strict";

(() => {
  const boardEl = document.getElementById("board");
  const alertsEl = document.getElementById("alerts");
  const connectionEl = document.getElementById("connection");
  const headEl = document.getElementById("head");
  const detailEl = document.getElementById("detail");
  const detailTitle = document.getElementById("detail-title");
  const factsEl = document.getElementById("facts");
  const historyEl = document.getElementById("history");
  const logoutForm = document.querySelector("form.logout");
  const searchEl = document.querySelector('input[name="search"]');
  const selectorEl = document.querySelector('input[name="selector"]');
  const sortEl = document.querySelector('select[name="sort"]');
  const levelButtons = document.querySelectorAll("[data-level-filter]");

  // Only these states heartbeat, so only their cards carry a liveness badge.
  const LIVE = new Set(["ASSIGNED", "WORKING"]);
  // Cards whose reason is the point of the card.
  const EXPLAINED = new Set(["FAILED", "CONFLICTED"]);
  // Finished work piles up: the COMPLETED column shows this many, newest first, until asked.
  const COMPLETED_SHOWN = 20;
  // Button words: short, so a card's actions fit on one line.
  const VERBS = {
    ASSIGNED: "reassign",
    WORKING: "work",
    CONFLICTED: "conflict",
    IN_REVIEW: "review",
    APPROVED: "approve",
    COMPLETED: "complete",
    FAILED: "fail",
  };

  let layout = null; // {columns, transitions, can_write, user, now_ms}
  let clockOffsetMs = 0; // the daemon's clock minus this browser's
  let lastEventId = null; // the revision the page has everything up to
  let openTask = null; // whose description is shown
  let levelFilter = null; // "WARN", "STALE", "DEAD" or null
  let showAllCompleted = false;
  let selector = ""; // the label selector the feed applies
  const cards = new Map(); // task id -> {el, data}
  const columns = new Map(); // state -> {section, list, count, more}
  const unsorted = new Set(); // states whose column needs sorting
  let refreshQueued = false;

  // -- small helpers ---------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function age(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d";
  }

  // Labels as `k=v` pairs, in the daemon's order (sorted by key), joined with ",".
  function labelText(labels) {
    return labels.map(([k, v]) => `${k}=${v}`).join(",");
  }

  function iso(ms) {
    return ms === null || ms === undefined ? "never" : new Date(ms).toISOString();
  }

  function now() {
    return Date.now() + clockOffsetMs;
  }

  function setConnection(state, text) {
    connectionEl.dataset.connection = state;
    connectionEl.textContent = text;
  }

  function showAlert(text, kind = "action") {
    alertsEl.replaceChildren();
    const box = el("div", "alert", null);
    box.setAttribute("role", "alert");
    box.dataset.alert = kind;
    box.append(el("span", null, text));
    const dismiss = el("button", null, "Dismiss");
    dismiss.type = "button";
    dismiss.addEventListener("click", () => box.remove());
    box.append(dismiss);
    alertsEl.append(box);
  }

  // -- columns ---------------------------------------------------------------------------

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
      let more = null;
      if (state === "COMPLETED") {
        more = el("button", "more");
        more.type = "button";
        more.dataset.showAll = "false";
        more.hidden = true;
        more.addEventListener("click", () => {
          showAllCompleted = !showAllCompleted;
          refresh();
        });
        section.append(more);
      }
      boardEl.append(section);
      columns.set(state, { section, list, count, more });
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

  // -- a card: built and filled in one place ---------------------------------------------

  // The fixed parts of a card; fill() puts a worker's data in them.
  function newCard(taskId) {
    const card = el("article", "card");
    card.dataset.taskId = taskId;
    const title = el("div", "title");
    const task = el("button", "task", taskId);
    task.type = "button";
    task.dataset.openHistory = "";
    task.title = "Describe " + taskId;
    title.append(task, el("span", "age"));
    const what = el("div", "what");
    what.append(el("span", "branch"), el("span", "description"));
    card.append(title, what, el("div", "labels"), el("div", "why"));
    return card;
  }

  // Everything on a card that follows from its data. Returns whether it moved column.
  function fill(card, data, previous) {
    const moved = !previous || previous.state !== data.state;
    card.dataset.state = data.state;
    card.dataset.revision = String(data.revision);
    card.dataset.stateSince = new Date(data.state_since_ms).toISOString();
    card.dataset.stateSinceMs = String(data.state_since_ms);
    const what = card.querySelector(".what");
    what.title = data.branch + (data.description ? "\n" + data.description : "");
    setText(card.querySelector(".branch"), data.branch);
    setText(card.querySelector(".description"), data.description ?? "");
    setLabels(card, data.labels);
    if (moved) {
      badge(card, data.state);
      actions(card, data.state);
    }
    setLevel(card, data.level);
    setWhy(card, data);
    setAge(card, now());
    return moved;
  }

  function setLabels(card, labels) {
    const text = labelText(labels);
    if (card.dataset.labels === text) return;
    card.dataset.labels = text;
    const box = card.querySelector(".labels");
    box.title = labels.map(([k, v]) => `${k}=${v}`).join("\n");
    box.replaceChildren(...labels.map(([k, v]) => el("span", "label", `${k}=${v}`)));
  }

  // The liveness badge, only where liveness means something.
  function badge(card, state) {
    const existing = card.querySelector(".level");
    if (LIVE.has(state) && !existing) {
      const level = el("span", "level", card.dataset.staleLevel || "");
      card.querySelector(".title").append(level);
    } else if (!LIVE.has(state) && existing) {
      existing.remove();
    }
  }

  function actions(card, state) {
    card.querySelector(".actions")?.remove();
    const targets = layout.can_write ? layout.transitions[state] || [] : [];
    if (!targets.length) return;
    const box = el("div", "actions");
    for (const target of targets) {
      const button = el("button", null, VERBS[target] || target);
      button.type = "button";
      button.dataset.action = target;
      button.title = `Move to ${target}`;
      box.append(button);
    }
    // The reason box shows when the pointer or focus is on the card, or once it has text.
    const reason = el("input");
    reason.name = "reason";
    reason.placeholder = "reason…";
    reason.maxLength = 4096;
    reason.setAttribute("aria-label", "Reason for the move (optional)");
    box.append(reason);
    card.append(box);
  }

  function setLevel(card, level) {
    if (card.dataset.staleLevel !== level) {
      card.dataset.staleLevel = level;
      queueRefresh(); // the header counts, and a level filter
    }
    const node = card.querySelector(".level");
    if (node) setText(node, level);
  }

  // The line under the branch: why a FAILED or CONFLICTED worker is there, else what a
  // worker said it is doing.
  function setWhy(card, data) {
    const why = card.querySelector(".why");
    if (EXPLAINED.has(data.state)) {
      let reason = why.querySelector("[data-reason]");
      if (!reason) {
        why.replaceChildren();
        reason = el("span", "reason");
        why.append(reason);
      }
      const text = data.reason ?? "";
      reason.dataset.reason = text;
      reason.title = text;
      setText(reason, text || "no reason given");
      reason.classList.toggle("none", !text);
    } else {
      let activity = why.querySelector(".activity");
      if (!activity) {
        why.replaceChildren();
        activity = el("span", "activity");
        why.append(activity);
      }
      setActivity(card, data.activity);
    }
  }

  function setActivity(card, activity) {
    const node = card.querySelector(".activity");
    if (!node) return;
    const text = activity ?? "";
    setText(node, text);
    node.title = text;
  }

  function setAge(card, at) {
    setText(card.querySelector(".age"), age(at - Number(card.dataset.stateSinceMs)));
  }

  // Put a card where its worker now is; `touched` collects columns to recount. A card older
  // than the one shown (the answer to a click that the feed already overtook) is ignored.
  function upsert(data, touched) {
    let entry = cards.get(data.task_id);
    if (entry && Number(entry.el.dataset.revision) > data.revision) return;
    if (!entry) {
      entry = { el: newCard(data.task_id), data: null };
      cards.set(data.task_id, entry);
    }
    const previous = entry.data;
    entry.data = data;
    if (previous && previous.state !== data.state) touched.add(previous.state);
    if (fill(entry.el, data, previous) || !entry.el.isConnected) {
      columns.get(data.state).list.append(entry.el);
      touched.add(data.state);
    }
    unsorted.add(data.state);
    if (openTask === data.task_id) showFacts(data);
  }

  // A worker deleted, or whose labels left the selector: its card goes.
  function drop(taskId, touched) {
    const entry = cards.get(taskId);
    if (!entry) return;
    cards.delete(taskId);
    entry.el.remove();
    touched.add(entry.data.state);
    if (openTask === taskId) closeDetail();
  }

  // -- sorting, filtering and counts -----------------------------------------------------

  const ORDER = {
    // the largest heartbeat age first: the one silent longest
    stalest: (a, b) => a.aged_ms - b.aged_ms || b.revision - a.revision,
    newest: (a, b) => b.revision - a.revision,
  };

  function queueRefresh() {
    if (refreshQueued) return;
    refreshQueued = true;
    requestAnimationFrame(refresh);
  }

  function refresh() {
    refreshQueued = false;
    for (const state of unsorted) sortColumn(state);
    filter();
    countLevels();
  }

  // Sorts a column, moving only cards that are out of place. A column with focus in it
  // (someone typing a reason) waits until the focus leaves, so the input is not taken away.
  function sortColumn(state) {
    const column = columns.get(state);
    if (!column) return;
    if (column.list.contains(document.activeElement)) return;
    unsorted.delete(state);
    const order = ORDER[sortEl.value] || ORDER.stalest;
    const sorted = [...column.list.children].sort((a, b) =>
      order(cards.get(a.dataset.taskId).data, cards.get(b.dataset.taskId).data),
    );
    sorted.forEach((card, i) => {
      if (column.list.children[i] !== card) column.list.insertBefore(card, column.list.children[i]);
    });
  }

  function matches(entry, words) {
    const d = entry.data;
    if (levelFilter && entry.el.dataset.staleLevel !== levelFilter) return false;
    if (!words) return true;
    return [d.task_id, d.branch, d.description ?? ""].some((t) => t.toLowerCase().includes(words));
  }

  // Which cards show: the search, the level filter, and the COMPLETED column's cut.
  function filter() {
    const words = searchEl.value.trim().toLowerCase();
    const recentCompleted = new Set(
      [...cards.values()]
        .filter((e) => e.data.state === "COMPLETED")
        .sort((a, b) => b.data.state_since_ms - a.data.state_since_ms)
        .slice(0, COMPLETED_SHOWN)
        .map((e) => e.data.task_id),
    );
    let cut = 0;
    for (const entry of cards.values()) {
      let shown = matches(entry, words);
      if (shown && entry.data.state === "COMPLETED" && !recentCompleted.has(entry.data.task_id)) {
        cut += 1;
        shown = showAllCompleted;
      }
      if (entry.el.hidden === shown) entry.el.hidden = !shown;
    }
    const more = columns.get("COMPLETED")?.more;
    if (more) {
      more.hidden = cut === 0;
      more.dataset.showAll = String(showAllCompleted);
      setText(more, showAllCompleted ? "show the 20 most recent" : `show ${cut} older`);
    }
  }

  function countLevels() {
    const counts = { WARN: 0, STALE: 0, DEAD: 0 };
    for (const entry of cards.values()) {
      const level = entry.el.dataset.staleLevel;
      if (level in counts) counts[level] += 1;
    }
    for (const button of levelButtons) {
      const level = button.dataset.levelFilter;
      setText(button.querySelector("[data-level-count]"), String(counts[level]));
      button.dataset.count = String(counts[level]);
    }
  }

  searchEl.addEventListener("input", () => filter());
  sortEl.addEventListener("change", () => {
    for (const state of columns.keys()) unsorted.add(state);
    refresh();
  });
  for (const button of levelButtons) {
    button.addEventListener("click", () => {
      const level = button.dataset.levelFilter;
      levelFilter = levelFilter === level ? null : level;
      for (const b of levelButtons) {
        b.setAttribute("aria-pressed", String(b.dataset.levelFilter === levelFilter));
      }
      filter();
    });
  }
  boardEl.addEventListener("focusout", () => setTimeout(queueRefresh, 0));

  // -- feed events -----------------------------------------------------------------------

  function reset(list) {
    for (const column of columns.values()) column.list.replaceChildren();
    cards.clear();
    const touched = new Set(layout.columns);
    for (const data of list) upsert(data, touched);
    recount(touched);
    refresh();
  }

  function changes(batch) {
    const touched = new Set();
    for (const data of batch.cards) upsert(data, touched);
    for (const taskId of batch.removed) drop(taskId, touched);
    recount(touched);
    queueRefresh();
    if (openTask !== null && batch.stored.includes(openTask)) loadHistory(openTask);
  }

  // A page back from an outage: levels and activities as they are now (the others are ok,
  // with no activity).
  function levels(map) {
    for (const [taskId, entry] of cards) {
      const [level, activity] = map[taskId] || ["ok", null];
      entry.data = { ...entry.data, level, activity };
      setLevel(entry.el, level);
      setActivity(entry.el, activity);
    }
  }

  function activities(map) {
    for (const [taskId, activity] of Object.entries(map)) {
      const entry = cards.get(taskId);
      if (!entry) continue;
      entry.data = { ...entry.data, activity };
      setActivity(entry.el, activity);
      if (openTask === taskId) showFacts(entry.data);
    }
  }

  // Heartbeat ages that moved (a beat is no event): the stalest-first order follows them.
  function beats(map) {
    for (const [taskId, agedMs] of Object.entries(map)) {
      const entry = cards.get(taskId);
      if (!entry || entry.data.aged_ms === agedMs) continue;
      entry.data = { ...entry.data, aged_ms: agedMs };
      unsorted.add(entry.data.state);
    }
    queueRefresh();
  }

  setInterval(() => {
    const at = now();
    for (const entry of cards.values()) setAge(entry.el, at);
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
    const query = new URLSearchParams();
    if (selector) query.set("selector", selector);
    if (lastEventId !== null) query.set("after", lastEventId);
    const search = query.toString();
    source = new EventSource("/api/events" + (search ? "?" + search : ""));
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
    source.addEventListener("beats", (event) => beats(JSON.parse(event.data)));
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

  // -- the label selector ----------------------------------------------------------------

  // Asks the daemon whether the selector parses (its explanation shows if not, and the cards
  // shown stay), then follows a feed of only the workers it picks, from a fresh snapshot.
  async function applySelector(text) {
    text = text.trim();
    if (text) {
      let answer;
      try {
        answer = await fetch("/api/selector?selector=" + encodeURIComponent(text), {
          credentials: "same-origin",
        });
      } catch (_) {
        showAlert("The daemon could not be reached; the filter is unchanged.", "selector");
        return false;
      }
      if (answer.status === 401) {
        location.reload(); // the session ended: show the login form
        return false;
      }
      if (!answer.ok) {
        const body = await answer.json().catch(() => ({}));
        showAlert(body.message || "The daemon refused the selector.", "selector");
        return false;
      }
    }
    alertsEl.querySelector('[data-alert="selector"]')?.remove();
    selector = text;
    const url = new URL(location.href);
    if (text) url.searchParams.set("selector", text);
    else url.searchParams.delete("selector");
    history.replaceState(null, "", url);
    source?.close();
    lastEventId = null;
    connect();
    return true;
  }

  selectorEl.addEventListener("keydown", (event) => {
    if (event.key === "Enter") applySelector(selectorEl.value);
  });

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
      upsert(body.card, touched);
      recount(touched);
      queueRefresh();
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

  // -- the describe panel ----------------------------------------------------------------

  function showFacts(data) {
    const beat = data.beat_ms === null ? "never" : `${iso(data.beat_ms)} (${age(now() - data.beat_ms)} ago)`;
    const rows = [
      ["State", data.state],
      ["Branch", data.branch],
      ["Worktree", data.worktree],
      ["Description", data.description ?? "—"],
      ["Labels", labelText(data.labels).replaceAll(",", "\n") || "—"],
      ["Created", iso(data.created_ms)],
      ["State since", iso(data.state_since_ms)],
      ["Last heartbeat", beat],
      ["Activity", data.activity ?? "—"],
      ["Revision", String(data.revision)],
    ];
    if (EXPLAINED.has(data.state)) rows.splice(1, 0, ["Reason", data.reason || "—"]);
    if (LIVE.has(data.state)) rows.splice(1, 0, ["Stale level", data.level]);
    const items = [];
    for (const [label, value] of rows) {
      const dt = el("dt", null, label);
      const dd = el("dd", null, value);
      dd.dataset.fact = label.toLowerCase().replaceAll(" ", "-");
      items.push(dt, dd);
    }
    factsEl.replaceChildren(...items);
  }

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
      const move =
        event.type === "LABELS_CHANGED"
          ? `labels → ${labelText(event.labels) || "(none)"}`
          : `${event.from_state ?? "(new)"} → ${event.to_state}`;
      item.dataset.type = event.type;
      item.append(
        el("div", "when", `${new Date(event.time_ms).toISOString()} · revision ${event.revision}`),
        el("div", "move", move),
        el("div", "reason", event.reason),
      );
      if (event.actor) {
        const actor = el("div", "actor", "by " + event.actor);
        actor.dataset.actor = event.actor;
        item.append(actor);
      }
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
    showFacts(cards.get(taskId).data);
    detailEl.hidden = false;
    loadHistory(taskId);
  }

  function closeDetail() {
    openTask = null;
    detailEl.hidden = true;
    delete historyEl.dataset.history;
  }

  document.getElementById("detail-close").addEventListener("click", closeDetail);

  boardEl.addEventListener("click", (event) => {
    const card = event.target.closest(".card");
    if (!card) return;
    const action = event.target.closest("[data-action]");
    if (action) act(card, action.dataset.action, action);
    else if (event.target.closest("[data-open-history]")) openHistory(card.dataset.taskId);
  });

  // A bookmarked selector starts the board filtered; an invalid one shows why, and everything.
  selectorEl.value = new URLSearchParams(location.search).get("selector") ?? "";
  applySelector(selectorEl.value).then((applied) => applied || connect());
})();
