// lipbatch review page: filters, keyboard navigation, playback and (when served) decisions.
(() => {
  "use strict";
  const config = JSON.parse(document.getElementById("review-config").textContent);
  const cells = [...document.querySelectorAll(".cell")];
  const filters = [...document.querySelectorAll("select[data-filter]")];
  const chips = [...document.querySelectorAll("[data-status-chip]")];
  const dialog = document.getElementById("reject-dialog");
  const noteInput = document.getElementById("reject-note");
  const toastBox = document.getElementById("toast");
  let current = null;
  let toastTimer = 0;

  const matches = (cell) => filters.every((f) => !f.value || cell.dataset[f.dataset.filter] === f.value);

  function applyFilters() {
    let shown = 0;
    for (const cell of cells) {
      cell.hidden = !matches(cell);
      if (!cell.hidden) shown += 1;
    }
    for (const table of document.querySelectorAll("table.grid")) {
      const rows = [...table.tBodies[0].rows];
      for (const row of rows) row.hidden = !row.querySelector(".cell:not([hidden])");
      for (const th of table.tHead.querySelectorAll("th[data-column]")) {
        const slots = [...table.querySelectorAll(`td[data-column="${CSS.escape(th.dataset.column)}"]`)];
        const used = slots.some((td) => td.querySelector(".cell:not([hidden])"));
        th.hidden = !used;
        for (const td of slots) td.hidden = !used;
      }
      table.closest("section").hidden = rows.every((row) => row.hidden);
    }
    document.getElementById("shown").textContent = `${shown} of ${cells.length} shown`;
    const status = filters.find((f) => f.dataset.filter === "status").value;
    for (const chip of chips) chip.classList.toggle("active", chip.dataset.statusChip === status);
    if (current && current.hidden) select(visibleCells()[0] || null);
  }

  function visibleRows() {
    return [...document.querySelectorAll("table.grid tbody tr")]
      .map((row) => [...row.querySelectorAll(".cell")].filter((cell) => !cell.hidden))
      .filter((row) => row.length && !row[0].closest("section").hidden);
  }

  const visibleCells = () => visibleRows().flat();

  function select(cell, scroll = true) {
    if (current) current.classList.remove("current");
    current = cell;
    if (!cell) return;
    cell.classList.add("current");
    cell.focus({ preventScroll: true });
    if (scroll) cell.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  function step(delta) {
    const list = visibleCells();
    if (!list.length) return;
    const at = list.indexOf(current);
    select(list[at < 0 ? 0 : Math.max(0, Math.min(list.length - 1, at + delta))]);
  }

  function vertical(delta) {
    const rows = visibleRows();
    const at = rows.findIndex((row) => row.includes(current));
    if (at < 0) return step(0);
    const target = rows[at + delta];
    if (!target) return;
    const same = target.find((cell) => cell.dataset.lang === current.dataset.lang);
    select(same || target[Math.min(rows[at].indexOf(current), target.length - 1)]);
  }

  function currentVideo(cell) {
    return cell ? cell.querySelector(".take.current video") : null;
  }

  function togglePlay() {
    const video = currentVideo(current);
    if (!video) return toast("no take to play here");
    // an AbortError only means a pause came before the play started: nothing to report
    if (video.paused) video.play().catch((error) => error.name === "AbortError" || toast(`cannot play: ${error.message}`));
    else video.pause();
  }

  function toast(...parts) {
    toastBox.replaceChildren(...parts.map((part) => {
      if (typeof part === "string") return document.createTextNode(part);
      const code = document.createElement("code");
      code.textContent = part.code;
      return code;
    }));
    toastBox.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toastBox.hidden = true; }, 8000);
  }

  function cliCommand(cell, decision, note) {
    const selector = `key=${cell.dataset.key.slice(0, 12)}`;
    return decision === "approved"
      ? `${config.command} --approve ${selector}`
      : `${config.command} --reject ${selector} --note '${(note || "...").replace(/'/g, "'\\''")}'`;
  }

  function showDecision(cell, answer) {
    cell.dataset.decision = answer.decision;
    const badge = cell.querySelector(".decision");
    badge.className = `decision d-${answer.decision}`;
    badge.textContent = answer.decision;
    let note = cell.querySelector(".note");
    if (!note) {
      note = document.createElement("p");
      note.className = "note";
      cell.querySelector(".meta").after(note);
    }
    note.textContent = `${answer.decision} by ${answer.by} ${answer.at.slice(0, 10)}` + (answer.note ? `: ${answer.note}` : "");
  }

  async function decide(cell, decision, note = "") {
    if (!cell || !cell.dataset.sha256) return toast("nothing to judge here: this job has no finished take");
    if (!config.served) {
      return toast("This page is a file: decisions are recorded by ", { code: `${config.command} --serve` },
        " or from the command line: ", { code: cliCommand(cell, decision, note) });
    }
    const before = visibleCells();
    let answer;
    try {
      const response = await fetch("api/decisions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key: cell.dataset.key, sha256: cell.dataset.sha256, decision, note }),
      });
      answer = await response.json();
      if (!response.ok) return toast(answer.error || `error ${response.status}`);
    } catch (error) {
      return toast(`the review server did not answer (${error.message}); is lipbatch review --serve still running?`);
    }
    showDecision(cell, answer);
    toast(`${answer.decision}: ${cell.dataset.output}`);
    applyFilters();
    const next = before.slice(before.indexOf(cell) + 1).find((c) => !c.hidden);
    select(next || (cell.hidden ? visibleCells()[0] || null : cell));
  }

  function askReject(cell) {
    if (!cell || !cell.dataset.sha256) return toast("nothing to judge here: this job has no finished take");
    document.getElementById("reject-what").textContent = cell.dataset.output;
    noteInput.value = "";
    dialog.returnValue = "";
    dialog.dataset.key = cell.dataset.key;
    dialog.showModal();
    noteInput.focus();
  }

  dialog.addEventListener("close", () => {
    const cell = cells.find((c) => c.dataset.key === dialog.dataset.key);
    if (dialog.returnValue === "reject" && noteInput.value.trim()) decide(cell, "rejected", noteInput.value.trim());
    else if (cell) select(cell, false);
  });
  dialog.querySelector('button[value="cancel"]').addEventListener("click", () => dialog.close("cancel"));

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || dialog.open) return;
    if (event.target.matches("input, select, textarea")) return;
    const actions = {
      ArrowRight: () => step(1), ArrowLeft: () => step(-1), j: () => step(1), k: () => step(-1),
      ArrowDown: () => vertical(1), ArrowUp: () => vertical(-1), " ": togglePlay,
      a: () => decide(current, "approved"), r: () => askReject(current),
    };
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  }, true);

  for (const cell of cells) {
    cell.addEventListener("click", () => select(cell, false));
    cell.querySelector(".approve")?.addEventListener("click", () => { select(cell, false); decide(cell, "approved"); });
    cell.querySelector(".reject")?.addEventListener("click", () => { select(cell, false); askReject(cell); });
  }
  for (const filter of filters) filter.addEventListener("change", () => { applyFilters(); filter.blur(); });
  for (const chip of chips) {
    chip.addEventListener("click", () => {
      const status = filters.find((f) => f.dataset.filter === "status");
      status.value = status.value === chip.dataset.statusChip ? "" : chip.dataset.statusChip;
      applyFilters();
    });
  }
  document.addEventListener("play", (event) => {
    for (const video of document.querySelectorAll("video")) if (video !== event.target) video.pause();
  }, true);

  applyFilters();
  select(visibleCells()[0] || null, false);
})();
