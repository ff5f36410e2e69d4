// The Configurations section: create from the sample template, edit with the errors shown by
// line before saving, the rollout of each revision, staged rollouts (the edited text for a share
// of the devices first; its state, promote, halt), the history of revisions (compare any with
// the current one, revert to one), assign to several devices, delete.
//
// One route (#/organizations/{org}/configurations) with two views: the list, and the editor of
// one configuration (or of a new one). The editor checks the body with the API as the admin types
// (POST /v1/configuration-check) so that problems are shown by line before anything is saved;
// the save itself is checked again by the server, and its refusal is shown the same way.

import { ApiError, del, get, getAll, getText, post, put, segment } from "./api.js";
import { stopWatching, watch } from "./live.js";
import { errorMessage, formatTime, h, renderChrome, show, showError, table } from "./ui.js";

/** How long the editor waits after the last keystroke before checking the body. */
const CHECK_DELAY_MS = 400;

/** Revisions shown at first in the editor's history, and added by "Show older revisions". */
const HISTORY_PAGE = 20;

const TITLE = "Configurations";

export async function renderConfigurations(org) {
  await renderList(org);
}

/** "1 device", "2 devices". */
function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

/** A message line under the heading; `kind` is "ok" or "error" (errors are announced at once). */
function notice(kind, text) {
  return h(
    "p",
    { id: "config-notice", class: `alert ${kind}`, role: kind === "error" ? "alert" : "status", tabindex: -1 },
    text,
  );
}

// --- the list --------------------------------------------------------------------------------

async function renderList(org, message = null) {
  // Back from an editor that followed the live feed.
  stopWatching();
  renderChrome(org, "configurations");
  show(TITLE, h("h1", {}, TITLE), h("p", { class: "muted" }, "Loading…"));
  const base = `/v1/organizations/${segment(org)}`;
  let organization, configurations, rollouts, rule;
  try {
    [organization, [configurations, rollouts], rule] = await Promise.all([
      get(base),
      readConfigurations(base),
      get(`${base}/new-device-configuration`),
    ]);
  } catch (error) {
    showError(TITLE, error);
    return;
  }
  const status = h("div", { id: "config-status", "aria-live": "polite" }, message && notice(message.kind, message.text));
  const say = (kind, text) => {
    status.replaceChildren(notice(kind, text));
  };
  /** Pins `configuration` for new devices (or unpins, with null), then shows the list again. */
  const pin = async (configuration) => {
    try {
      const answer = await put(`${base}/new-device-configuration`, {
        configuration_id: configuration ? configuration.id : null,
      });
      await renderList(org, {
        kind: "ok",
        text: configuration
          ? `New devices now get “${answer.name}”, whatever is created later.`
          : answer.name
            ? `Unpinned: new devices get the most recently created configuration again, “${answer.name}”.`
            : "Unpinned.",
      });
    } catch (error) {
      say("error", `Nothing changed: ${errorMessage(error)}`);
    }
  };

  const current = configurations.find((configuration) => configuration.id === rule.configuration_id);
  let newDevices;
  if (!current) {
    newDevices = h(
      "p",
      { id: "new-devices-get", class: "new-devices", "data-rule": rule.rule },
      "This organization has no configuration yet. New devices pair and wait without one until ",
      "the first configuration is created; they receive it as soon as it is.",
    );
  } else if (rule.rule === "pinned") {
    const unpin = h("button", { type: "button", class: "button secondary small", id: "unpin" }, "Unpin");
    unpin.addEventListener("click", () => pin(null));
    newDevices = h(
      "p",
      { id: "new-devices-get", class: "new-devices", "data-rule": "pinned" },
      "New devices get ",
      h("strong", { "data-config-id": current.id }, `“${current.name}”`),
      ", pinned: configurations created later do not change that. ",
      unpin,
    );
  } else {
    newDevices = h(
      "p",
      { id: "new-devices-get", class: "new-devices", "data-rule": "newest" },
      "New devices get ",
      h("strong", { "data-config-id": current.id }, `“${current.name}”`),
      `, the most recently created configuration (created ${formatTime(current.created_at)}). `,
      "Pin one to keep new devices on it whatever is created later.",
    );
  }

  const row = (configuration, rollout) => {
    const edit = h(
      "button",
      { type: "button", class: "button secondary", "data-action": "edit", "aria-label": `Edit ${configuration.name}` },
      "Edit",
    );
    edit.addEventListener("click", () => renderEditor(org, configuration.id));
    const remove = h(
      "button",
      { type: "button", class: "button secondary danger", "data-action": "delete", "aria-label": `Delete ${configuration.name}` },
      "Delete",
    );
    remove.addEventListener("click", () => deleteConfiguration(org, configuration, say));
    const isCurrent = configuration === current;
    const pinButton =
      isCurrent && rule.rule === "pinned"
        ? null
        : h(
            "button",
            {
              type: "button",
              class: "button secondary",
              "data-action": "pin",
              "aria-label": `Pin ${configuration.name} for new devices`,
            },
            "Pin for new devices",
          );
    pinButton?.addEventListener("click", () => pin(configuration));
    return h(
      "tr",
      { "data-config-id": configuration.id },
      h(
        "td",
        { "data-label": "Name" },
        h(
          "span",
          { class: "config-name" },
          configuration.name,
          isCurrent
            ? h("span", { class: "badge ok new-badge" }, rule.rule === "pinned" ? "new devices · pinned" : "new devices")
            : null,
        ),
        stagedBadge(configuration, rollout),
      ),
      h("td", { "data-label": "Revision", "data-field": "revision" }, String(configuration.revision)),
      h("td", { "data-label": "Updated", "data-field": "updated" }, formatTime(configuration.updated_at)),
      h(
        "td",
        { "data-label": "Devices", "data-field": "devices" },
        devicesText(configuration, rollout),
      ),
      h("td", { "data-label": "Actions", class: "actions" }, edit, " ", pinButton, pinButton ? " " : null, remove),
    );
  };

  const create = h("button", { type: "button", class: "button", id: "new-configuration" }, "New configuration");
  create.addEventListener("click", () => renderEditor(org, null));

  const list = configurations.length
    ? h(
        "div",
        { class: "table-wrap" },
        table(
          { id: "configurations", class: "configurations" },
          "The organization's configurations",
          ["Name", "Revision", "Updated", "Devices", "Actions"],
          h(
            "tbody",
            {},
            configurations.map((configuration, index) => row(configuration, rollouts[index])),
          ),
        ),
      )
    : h("p", { id: "no-configurations", class: "muted" }, "No configurations yet.");

  const heading = h("h1", { tabindex: -1, id: "configurations-title" }, TITLE);
  show(
    TITLE,
    h("p", { class: "org-name", id: "org-name" }, organization.name),
    heading,
    newDevices,
    h("p", { class: "config-toolbar" }, create),
    status,
    list,
  );
  // Focus goes to the news (created, deleted) or to the heading, never lost on a removed button.
  (status.querySelector("#config-notice") ?? heading).focus();
  followList(org, configurations, rule);
}

/**
 * The organization's configurations and, for each, its rollout (which gives "up to date"; a
 * failure there only blanks that count: null).
 */
async function readConfigurations(base) {
  const configurations = await getAll(`${base}/configurations`);
  const rollouts = await Promise.all(
    configurations.map((configuration) =>
      get(`${base}/configurations/${segment(configuration.id)}/rollout`).catch(() => null),
    ),
  );
  return [configurations, rollouts];
}

/** The staged rollout in progress (running or halted) of a rollout view, or null. */
function inProgress(rollout) {
  const staged = rollout?.staged;
  return staged && (staged.state === "running" || staged.state === "halted") ? staged : null;
}

/**
 * The list's mark beside a configuration with a staged rollout in progress: "rolling out r5 to
 * 30%" or "r5 halted". Always present (empty when there is none) so that the live feed can
 * update it in place.
 */
function stagedBadge(configuration, rollout) {
  const badge = h("span", { class: "staged-badge", "data-field": "staged" });
  fillStagedBadge(badge, configuration, rollout);
  return badge;
}

function fillStagedBadge(badge, configuration, rollout) {
  const staged = inProgress(rollout);
  if (!configuration.staged_revision || !staged) {
    badge.replaceChildren();
    return;
  }
  const to = staged.share_percent === null ? plural(staged.chosen_devices, "device") : `${staged.share_percent}%`;
  badge.replaceChildren(
    h(
      "span",
      { class: `badge ${staged.state === "halted" ? "failed" : "pending"} new-badge`, "data-state": staged.state },
      staged.state === "halted" ? `r${staged.revision} halted` : `rolling out r${staged.revision} to ${to}`,
    ),
  );
}

/** The list's "Devices" cell: how many devices have it, and how many run its current revision. */
function devicesText(configuration, rollout) {
  const assigned = rollout ? rollout.assigned_devices : configuration.assigned_devices;
  return rollout ? `${assigned} assigned · ${rollout.up_to_date} up to date` : `${assigned} assigned`;
}

/**
 * Keeps the list's revisions and device counts current from the live feed. The rows are
 * updated in place (the focus stays where it is); a configuration created or deleted elsewhere
 * re-renders the list.
 */
function followList(org, shown, shownRule) {
  const base = `/v1/organizations/${segment(org)}`;
  const shownIds = shown.map((configuration) => configuration.id).join();
  let pending = null;
  const reread = async () => {
    pending = null;
    let configurations, rollouts, rule;
    try {
      [[configurations, rollouts], rule] = await Promise.all([
        readConfigurations(base),
        get(`${base}/new-device-configuration`),
      ]);
    } catch {
      return; // The next event, or a reload, tries again.
    }
    // Still on this list (not in an editor, not elsewhere)?
    if (!document.getElementById("configurations-title")) return;
    // Created, deleted, pinned or unpinned elsewhere: the whole list again.
    if (
      configurations.map((configuration) => configuration.id).join() !== shownIds ||
      rule.rule !== shownRule.rule ||
      rule.configuration_id !== shownRule.configuration_id
    ) {
      renderList(org);
      return;
    }
    const table = document.getElementById("configurations");
    if (!table) return;
    configurations.forEach((configuration, index) => {
      const row = table.querySelector(`tr[data-config-id="${configuration.id}"]`);
      if (!row) return;
      row.querySelector('[data-field="revision"]').textContent = String(configuration.revision);
      row.querySelector('[data-field="updated"]').textContent = formatTime(configuration.updated_at);
      row.querySelector('[data-field="devices"]').textContent = devicesText(configuration, rollouts[index]);
      const badge = row.querySelector('[data-field="staged"]');
      if (badge) fillStagedBadge(badge, configuration, rollouts[index]);
    });
  };
  watch(org, (name) => {
    if (!document.getElementById("configurations-title")) {
      stopWatching();
      return;
    }
    if (!["devices", "configurations", "rollout", "resync"].includes(name) || pending) return;
    pending = setTimeout(reread, 300);
  });
}

async function deleteConfiguration(org, configuration, say) {
  const path = `/v1/organizations/${segment(org)}/configurations/${segment(configuration.id)}`;
  if (!window.confirm(`Delete the configuration “${configuration.name}”? This cannot be undone.`)) return;
  try {
    await del(path);
  } catch (error) {
    if (error instanceof ApiError && error.code === "configuration_in_use" && /pinned/.test(error.message)) {
      say(
        "error",
        `“${configuration.name}” was not deleted: it is pinned for new devices. ` +
          "Pin another configuration or unpin it first, then delete it.",
      );
    } else if (error instanceof ApiError && error.code === "configuration_in_use") {
      // The refusal's count is in its English message only; the configuration itself has it.
      let count = null;
      try {
        count = (await get(path)).assigned_devices;
      } catch {
        const match = /assigned to (\d+)/.exec(error.message);
        count = match ? Number(match[1]) : null;
      }
      const devices = count === null ? "devices" : plural(count, "device");
      say(
        "error",
        `“${configuration.name}” was not deleted: it is assigned to ${devices}. ` +
          "Assign another configuration to those devices first, then delete it.",
      );
    } else {
      say("error", `“${configuration.name}” was not deleted: ${errorMessage(error)}`);
    }
    return;
  }
  await renderList(org, { kind: "ok", text: `Deleted “${configuration.name}”.` });
}

// --- the editor ------------------------------------------------------------------------------

/** Opens the editor of configuration `configId`, or of a new configuration when it is null. */
async function renderEditor(org, configId) {
  renderChrome(org, "configurations");
  show(TITLE, h("h1", {}, TITLE), h("p", { class: "muted" }, "Loading…"));
  const base = `/v1/organizations/${segment(org)}`;
  const configPath = configId ? `${base}/configurations/${segment(configId)}` : null;
  let configuration = null;
  let rollout = null;
  let devices = [];
  let body;
  let rule;
  try {
    if (configId) {
      [configuration, rollout, devices, rule] = await Promise.all([
        get(configPath),
        get(`${configPath}/rollout`),
        getAll(`${base}/devices`),
        get(`${base}/new-device-configuration`),
      ]);
      body = configuration.body ?? "";
      // During a staged rollout the editor holds the staged text: the latest revision, which a
      // save (or a newer staged rollout) follows.
      if (configuration.staged_revision) {
        body = (await get(`${configPath}/revisions/${configuration.staged_revision}`)).body ?? "";
      }
    } else {
      [body, rule] = await Promise.all([
        getText("/v1/configuration-template"),
        get(`${base}/new-device-configuration`),
      ]);
    }
  } catch (error) {
    showError(TITLE, error);
    return;
  }

  const back = h("button", { type: "button", class: "button secondary", id: "back-to-list" }, "← All configurations");
  back.addEventListener("click", () => renderList(org));
  const title = h("h1", { id: "editor-title", tabindex: -1 });
  const meta = h("p", { id: "config-meta", class: "muted" });
  // The revision the editor's text is (its latest, the staged one during a staged rollout) and
  // that text: a save is made on that revision (if_revision), so that an edit made elsewhere
  // meanwhile is refused instead of overwritten.
  let editorRevision = configuration ? (configuration.staged_revision ?? configuration.revision) : null;
  let editorBody = body;
  const describe = () => {
    if (configuration) {
      title.textContent = `Edit “${configuration.name}”`;
      meta.textContent =
        `Revision ${configuration.revision}` +
        (configuration.staged_revision ? ` · revision ${configuration.staged_revision} staged` : "") +
        ` · updated ${formatTime(configuration.updated_at)} · ` +
        `created ${formatTime(configuration.created_at)}`;
    } else {
      title.textContent = "New configuration";
      meta.textContent = "Starts from the sample template.";
    }
  };
  describe();
  // What a save does to new devices, said before it is made.
  let newDevicesNote = null;
  if (!configuration && rule.rule === "newest" && rule.configuration_id) {
    newDevicesNote = h(
      "p",
      { id: "new-devices-note", class: "alert warning" },
      `Creating it changes what new devices get: this configuration instead of “${rule.name}”, ` +
        "the most recently created one now. Devices already paired keep theirs.",
    );
  } else if (!configuration && rule.rule === "newest") {
    newDevicesNote = h(
      "p",
      { id: "new-devices-note", class: "muted" },
      "Once created, it is the configuration new devices get, and the devices paired while there was none receive it.",
    );
  } else if (!configuration) {
    newDevicesNote = h(
      "p",
      { id: "new-devices-note", class: "muted" },
      `New devices keep getting the pinned “${rule.name}”; creating this one does not change that.`,
    );
  } else if (rule.configuration_id === configuration.id) {
    newDevicesNote = h(
      "p",
      { id: "new-devices-note", class: "alert warning" },
      `New devices get this configuration (${rule.rule === "pinned" ? "pinned" : "the most recently created"}): ` +
        "a save changes what they receive, as well as what the devices that have it run.",
    );
  }

  // The form: name, body, the problems found, Save.
  const nameInput = h("input", {
    id: "config-name",
    type: "text",
    maxlength: 200,
    required: true,
    autocomplete: "off",
    value: configuration ? configuration.name : "",
    "aria-describedby": "config-name-error",
  });
  const nameError = h("p", { id: "config-name-error", class: "field-error", hidden: true });
  const textarea = h("textarea", {
    id: "config-body",
    class: "config-body",
    rows: 22,
    wrap: "off",
    spellcheck: "false",
    autocapitalize: "off",
    autocomplete: "off",
    "aria-describedby": "config-body-help check-summary",
  });
  textarea.value = body;
  const checkSummary = h("p", { id: "check-summary", class: "check-summary" }, "Checking…");
  const problemList = h("ul", { id: "config-problems", class: "problems" });
  const save = h("button", { type: "submit", class: "button", id: "save-config" }, configuration ? "Save" : "Create configuration");
  const saveStatus = h("p", { id: "save-status", class: "save-status", role: "status" });
  const form = h(
    "form",
    { id: "config-form", class: "config-form", novalidate: true },
    h("label", { for: "config-name" }, "Name"),
    nameInput,
    nameError,
    h("label", { for: "config-body" }, "Configuration (INI)"),
    h(
      "p",
      { id: "config-body-help", class: "muted hint" },
      "[SECTION] names in upper case, key = value lines in lower case, # for comments; the first section is [GLOBAL]. ",
      "Problems are checked as you type and shown below by line.",
    ),
    textarea,
    h("div", { class: "check", "aria-live": "polite" }, checkSummary, problemList),
    h("div", { class: "form-actions" }, save, saveStatus),
  );

  let errors = 0;
  let saving = false;
  const updateSave = () => {
    save.disabled = saving || errors > 0;
    // The staged rollout's button (declared with its panel below) saves the same text.
    startButton.disabled = save.disabled;
  };

  /** Puts the caret at the start of `line` (1-based; 0 is the whole body: the start). */
  const goToLine = (line) => {
    const lines = textarea.value.split("\n");
    const index = Math.max(0, Math.min(line - 1, lines.length - 1));
    let start = 0;
    for (let i = 0; i < index; i += 1) start += lines[i].length + 1;
    textarea.focus();
    textarea.setSelectionRange(start, start);
    const lineHeight = Number.parseFloat(getComputedStyle(textarea).lineHeight) || 20;
    textarea.scrollTop = Math.max(0, (index - 3) * lineHeight);
  };

  const showProblems = (problems) => {
    errors = problems.filter((problem) => problem.severity === "error").length;
    const warnings = problems.length - errors;
    if (errors > 0) {
      checkSummary.textContent =
        `${plural(errors, "error")}${warnings ? ` and ${plural(warnings, "warning")}` : ""}: ` +
        "fix the errors to save. Choose a problem to go to its line.";
      checkSummary.className = "check-summary has-errors";
    } else if (warnings > 0) {
      checkSummary.textContent = `No errors, ${plural(warnings, "warning")}: it can be saved.`;
      checkSummary.className = "check-summary has-warnings";
    } else {
      checkSummary.textContent = "No problems found.";
      checkSummary.className = "check-summary ok";
    }
    problemList.replaceChildren(
      ...problems.map((problem) => {
        const where = problem.line > 0 ? `Line ${problem.line}` : "Whole body";
        const item = h(
          "button",
          { type: "button", class: "problem-button" },
          h("span", { class: "problem-line" }, where),
          " · ",
          h("span", { class: `severity ${problem.severity}` }, problem.severity),
          " · ",
          h("span", { class: "problem-message" }, problem.message),
        );
        item.addEventListener("click", () => goToLine(problem.line));
        return h(
          "li",
          { class: `problem ${problem.severity}`, "data-line": problem.line, "data-severity": problem.severity },
          item,
        );
      }),
    );
    updateSave();
  };

  // Checks are numbered so that a slow answer never overwrites a newer one.
  let checkNumber = 0;
  let timer = null;
  /** Checks the body now; resolves to the check's answer, or null when it could not be made. */
  const check = async () => {
    clearTimeout(timer);
    const number = ++checkNumber;
    try {
      const result = await post("/v1/configuration-check", { body: textarea.value });
      if (number === checkNumber) showProblems(result.problems);
      return result;
    } catch (error) {
      if (number !== checkNumber) return null;
      if (error instanceof ApiError && error.status === 422) {
        // Too large, or a NUL character: refused as a save would be.
        showProblems([{ line: 0, severity: "error", message: error.message }]);
        return { valid: false, errors: 1, warnings: 0, problems: [] };
      }
      checkSummary.textContent = `The configuration could not be checked: ${errorMessage(error)}`;
      checkSummary.className = "check-summary has-errors";
      return null;
    }
  };
  textarea.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(check, CHECK_DELAY_MS);
  });
  nameInput.addEventListener("input", () => {
    nameError.hidden = true;
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (saving) return;
    const name = nameInput.value.trim();
    if (!name) {
      nameError.textContent = "Give the configuration a name.";
      nameError.hidden = false;
      nameInput.focus();
      return;
    }
    saving = true;
    updateSave();
    saveStatus.textContent = "Checking…";
    const checked = await check();
    if (!checked || checked.errors > 0) {
      saving = false;
      updateSave();
      saveStatus.textContent = checked ? "Not saved: fix the errors listed above." : "Not saved.";
      problemList.querySelector("li.error button")?.focus();
      return;
    }
    saveStatus.textContent = "Saving…";
    try {
      if (configuration) {
        const edit = { if_revision: editorRevision };
        if (name !== configuration.name) edit.name = name;
        if (textarea.value !== editorBody) edit.body = textarea.value;
        if (edit.name === undefined && edit.body === undefined) {
          saveStatus.textContent = "Nothing changed: no new revision.";
          return;
        }
        const active = inProgress(rollout);
        if (
          active &&
          !window.confirm(
            `A staged rollout of revision ${active.revision} is in progress (${active.state}). ` +
              "Saving now supersedes it: every device that has this configuration receives the new " +
              "revision at once, not only the chosen ones. Save anyway?",
          )
        ) {
          saveStatus.textContent = "Not saved: the staged rollout goes on.";
          return;
        }
        configuration = await put(configPath, edit);
        editorRevision = configuration.revision;
        editorBody = configuration.body ?? "";
        describe();
        saveStatus.textContent =
          `Saved as revision ${configuration.revision}. ` +
          "Connected devices that have it assigned receive it now.";
        await Promise.all([refreshRollout(), refreshHistory()]);
      } else {
        const created = await post(`${base}/configurations`, { name, body: textarea.value });
        await renderList(org, {
          kind: "ok",
          text:
            rule.rule === "pinned"
              ? `Created “${created.name}”. New devices still get the pinned “${rule.name}”.`
              : `Created “${created.name}”. New devices get it from now on.`,
        });
      }
    } catch (error) {
      if (error instanceof ApiError && error.code === "invalid_configuration" && error.problems) {
        showProblems(error.problems);
        saveStatus.textContent = "Not saved: the server found errors, listed above.";
      } else if (error instanceof ApiError && error.code === "revision_mismatch") {
        saveStatus.textContent =
          `Not saved: someone else changed this configuration meanwhile (${error.message}). ` +
          "Copy your text, go back to the list and open it again.";
      } else {
        saveStatus.textContent = `Not saved: ${errorMessage(error)}`;
      }
    } finally {
      saving = false;
      updateSave();
    }
  });

  // Rollout and assignment: only for a configuration that exists.
  const rolloutSection = h("section", { id: "rollout", "aria-labelledby": "rollout-title" });
  const assignSection = h("section", { id: "assign", "aria-labelledby": "assign-title" });
  const assignResult = h("p", { id: "assign-result", role: "status", tabindex: -1 });

  const renderRollout = () => {
    const refresh = h("button", { type: "button", class: "button secondary", id: "refresh-rollout" }, "Refresh");
    refresh.addEventListener("click", () => refreshRollout());
    const revisions = rollout.revisions.length
      ? h(
          "div",
          { class: "table-wrap rollout-wrap" },
          table(
            { id: "rollout-revisions", class: "rollout" },
            "Devices per revision",
            ["Revision", "Running it (applied)", "Failed to apply it"],
            h(
              "tbody",
              {},
              rollout.revisions.map((entry) =>
                h(
                  "tr",
                  { "data-revision": entry.revision },
                  h(
                    "td",
                    { "data-label": "Revision" },
                    h(
                      "span",
                      {},
                      String(entry.revision),
                      entry.revision === rollout.revision ? h("span", { class: "muted" }, " (current)") : null,
                    ),
                  ),
                  h("td", { "data-label": "Applied", "data-count": "applied" }, String(entry.applied)),
                  h(
                    "td",
                    { "data-label": "Failed", "data-count": "failed", class: entry.failed ? "failed-count" : null },
                    String(entry.failed),
                  ),
                ),
              ),
            ),
          ),
        )
      : h("p", { id: "rollout-none", class: "muted" }, "No device has reported any revision of it yet.");
    rolloutSection.replaceChildren(
      h("h2", { id: "rollout-title" }, "Rollout"),
      h(
        "p",
        { id: "rollout-summary" },
        `Assigned to ${plural(rollout.assigned_devices, "device")}; `,
        h("strong", { "data-count": "up-to-date" }, String(rollout.up_to_date)),
        ` up to date with revision ${rollout.revision}. `,
        refresh,
      ),
      revisions,
    );
  };

  const refreshRollout = async () => {
    try {
      rollout = await get(`${configPath}/rollout`);
      renderRollout();
      renderStaged();
    } catch (error) {
      rolloutSection.replaceChildren(
        h("h2", { id: "rollout-title" }, "Rollout"),
        h("p", { class: "alert error", role: "alert" }, `The rollout could not be read: ${errorMessage(error)}`),
      );
    }
  };

  // The staged rollout: the editor's text saved for a share of the devices first (the others,
  // and new devices, keep the stable revision until it is promoted), the one in progress with
  // its counts and actions, or a line on how the last one ended.
  const stagedSection = h("section", { id: "staged-rollout", "aria-labelledby": "staged-title" });
  const stagedView = h("div", { id: "staged-view", "aria-live": "polite" });
  const stagedStatus = h("p", { id: "staged-status", role: "status", tabindex: -1 });
  const shareInput = h("input", { id: "staged-share", type: "number", min: 1, max: 100, step: 1, value: 10, required: true });
  const autoBox = h("input", { id: "staged-auto", type: "checkbox", "aria-controls": "staged-hours" });
  const hoursInput = h("input", { id: "staged-hours", type: "number", min: 1, max: 2160, step: 1, value: 24, disabled: true });
  const maxFailuresInput = h("input", { id: "staged-max-failures", type: "number", min: 0, max: 1000000, step: 1, value: 0 });
  const startButton = h("button", { type: "submit", class: "button", id: "start-rollout" }, "Start staged rollout");
  autoBox.addEventListener("change", () => {
    hoursInput.disabled = !autoBox.checked;
  });
  const stagedHelp = h("p", { id: "staged-help", class: "muted hint" });
  const stagedForm = h(
    "form",
    { id: "staged-form", class: "staged-form", novalidate: true, "aria-describedby": "staged-help" },
    stagedHelp,
    h(
      "div",
      { class: "staged-fields" },
      h("label", { for: "staged-share" }, "Share of the devices first (%)", shareInput),
      h(
        "div",
        { class: "staged-auto" },
        h("label", { for: "staged-auto", class: "pick" }, autoBox, " Promote automatically after"),
        h("label", { for: "staged-hours" }, "Hours", hoursInput),
      ),
      h("label", { for: "staged-max-failures" }, "Halt after more than this many failures", maxFailuresInput),
    ),
    h("div", { class: "form-actions" }, startButton),
  );

  /** Who started or ended a rollout, as the page says it. */
  const byWhom = (who) => (who === "system" ? "the server itself" : savedBy(who));

  /** An integer field's value within [min, max], or null (the field is then marked invalid). */
  const integerIn = (input, min, max) => {
    const value = Number(input.value);
    const ok = input.value.trim() !== "" && Number.isInteger(value) && value >= min && value <= max;
    input.setAttribute("aria-invalid", ok ? "false" : "true");
    return ok ? value : null;
  };

  const stagedFailed = (text) => {
    stagedStatus.className = "alert error";
    stagedStatus.setAttribute("role", "alert");
    stagedStatus.textContent = text;
  };
  const stagedSaid = (text) => {
    stagedStatus.className = "alert ok";
    stagedStatus.setAttribute("role", "status");
    stagedStatus.textContent = text;
  };

  stagedForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (saving) return;
    if (nameInput.value.trim() !== configuration.name) {
      stagedFailed(
        "Not started: a staged rollout keeps the configuration's name. Save the new name with Save, or put the name back.",
      );
      nameInput.focus();
      return;
    }
    const share = integerIn(shareInput, 1, 100);
    if (share === null) {
      stagedFailed("Not started: the share is a whole number of percent, from 1 to 100.");
      shareInput.focus();
      return;
    }
    const hours = autoBox.checked ? integerIn(hoursInput, 1, 2160) : null;
    if (autoBox.checked && hours === null) {
      stagedFailed("Not started: promote automatically after 1 to 2,160 hours (90 days), or turn it off.");
      hoursInput.focus();
      return;
    }
    const maxFailures = integerIn(maxFailuresInput, 0, 1000000);
    if (maxFailures === null) {
      stagedFailed("Not started: the failures allowed are a whole number, from 0 to 1,000,000.");
      maxFailuresInput.focus();
      return;
    }
    if (textarea.value === editorBody) {
      stagedFailed(`Not started: the text is the same as revision ${editorRevision}. Edit it first.`);
      textarea.focus();
      return;
    }
    saving = true;
    updateSave();
    stagedStatus.className = "";
    stagedStatus.textContent = "Checking…";
    const checked = await check();
    if (!checked || checked.errors > 0) {
      saving = false;
      updateSave();
      stagedFailed(checked ? "Not started: fix the errors listed above." : "Not started.");
      problemList.querySelector("li.error button")?.focus();
      return;
    }
    stagedStatus.textContent = "Starting…";
    try {
      const started = await post(`${configPath}/rollout`, {
        body: textarea.value,
        share_percent: share,
        promote_after_seconds: hours === null ? null : hours * 3600,
        max_failures: maxFailures,
        if_revision: editorRevision,
      });
      editorRevision = started.revision;
      editorBody = textarea.value;
      await Promise.all([refreshConfiguration(), refreshRollout(), refreshHistory()]);
      stagedSaid(
        `Started: revision ${started.revision} goes to ${plural(started.chosen_devices, "device")} first ` +
          `(${started.share_percent}%); the others keep revision ${started.stable_revision} until it is promoted.`,
      );
      stagedStatus.focus();
    } catch (error) {
      if (error instanceof ApiError && error.code === "invalid_configuration" && error.problems) {
        showProblems(error.problems);
        stagedFailed("Not started: the server found errors, listed above.");
      } else if (error instanceof ApiError && error.code === "revision_mismatch") {
        stagedFailed(
          `Not started: someone else changed this configuration meanwhile (${error.message}). ` +
            "Copy your text, go back to the list and open it again.",
        );
      } else {
        stagedFailed(`Not started: ${errorMessage(error)}`);
      }
    } finally {
      saving = false;
      updateSave();
    }
  });

  /** Promotes or halts the rollout in progress (`action`: "promote" or "halt"). */
  const decide = async (action, staged) => {
    if (
      action === "promote" &&
      !window.confirm(
        `Promote revision ${staged.revision} to every device of “${configuration.name}”? ` +
          `The devices still on revision ${staged.stable_revision} receive it at once, and new devices get it.`,
      )
    ) {
      return;
    }
    stagedStatus.className = "";
    stagedStatus.textContent = action === "promote" ? "Promoting…" : "Halting…";
    try {
      const answer = await post(`${configPath}/rollout/${action}`, {});
      await Promise.all([refreshConfiguration(), refreshRollout(), refreshHistory()]);
      stagedSaid(
        action === "promote"
          ? `Promoted: revision ${answer.revision} is now the configuration's own; every device receives it.`
          : `Halted: revision ${answer.revision} stays on the chosen devices and will not promote itself.`,
      );
    } catch (error) {
      stagedFailed(
        error instanceof ApiError && error.code === "no_rollout_in_progress"
          ? `Nothing ${action === "promote" ? "promoted" : "halted"}: the staged rollout already ended.`
          : `Nothing ${action === "promote" ? "promoted" : "halted"}: ${errorMessage(error)}`,
      );
      await refreshRollout();
    }
    // The buttons were replaced (or are gone): the keyboard goes to the news.
    stagedStatus.focus();
  };

  /** The sentence on a rollout in progress, as the panel shows it. */
  const stagedSentence = (staged) => {
    if (staged.state === "running") {
      const share = staged.share_percent === null ? "" : ` (${staged.share_percent}%)`;
      const fail = staged.max_failures === 1 ? "fails" : "fail";
      return (
        `Running: revision ${staged.revision} on ${staged.staged_devices} of ` +
        `${plural(rollout.assigned_devices, "device")}${share}, the others on revision ${staged.stable_revision}; ` +
        (staged.promote_at
          ? `promotes itself at ${formatTime(staged.promote_at)} unless more than ` +
            `${plural(staged.max_failures, "device")} ${fail}.`
          : `an admin promotes it; more than ${plural(staged.max_failures, "device")} failing halt it.`)
      );
    }
    const next = "promote it, or save again to give every device a newer revision.";
    if (staged.ended_by === "system" && staged.failed_devices !== null) {
      return (
        `Halted: ${plural(staged.failed_devices, "device")} failed to apply revision ${staged.revision} ` +
        `(more than the ${staged.max_failures} allowed). The chosen devices keep it; ${next}`
      );
    }
    return (
      `Halted by ${byWhom(staged.ended_by)} (${formatTime(staged.ended_at)}): revision ${staged.revision} ` +
      `stays on the ${plural(staged.staged_devices, "chosen device")}, the others on revision ` +
      `${staged.stable_revision}; ${next}`
    );
  };

  /** The line on the latest rollout once it ended. */
  const endedSentence = (staged) =>
    staged.state === "promoted"
      ? `Last staged rollout: revision ${staged.revision} promoted to every device ${formatTime(staged.ended_at)}` +
        (staged.ended_by === "system" ? " (it promoted itself)." : ` by ${byWhom(staged.ended_by)}.`)
      : `Last staged rollout: revision ${staged.revision} superseded by a newer revision ${formatTime(staged.ended_at)}` +
        ` by ${byWhom(staged.ended_by)}.`;

  let stagedShown = null;
  const renderStaged = () => {
    // Re-rendered only when something shown changed, so that the live feed does not take the
    // focus from a button for nothing.
    const shown = JSON.stringify([rollout.staged, rollout.revisions, rollout.assigned_devices, editorRevision]);
    if (shown === stagedShown) return;
    stagedShown = shown;
    const focusedId = stagedSection.contains(document.activeElement) ? document.activeElement.id : null;
    const staged = rollout.staged;
    const active = inProgress(rollout);
    stagedForm.hidden = Boolean(active);
    stagedHelp.textContent =
      `Saves the editor's text as revision ${editorRevision + 1} for a share of the devices first, chosen at random. ` +
      `The others, and devices paired or assigned meanwhile, keep revision ${editorRevision} until it is promoted; ` +
      "more failures than allowed halt it.";
    if (!active) {
      stagedView.replaceChildren(
        staged
          ? h("p", { id: "staged-last", "data-state": staged.state }, endedSentence(staged))
          : h("p", { id: "staged-none", class: "muted" }, "No staged rollout yet."),
      );
    } else {
      const counts = (revision) => rollout.revisions.find((entry) => entry.revision === revision) ?? { applied: 0, failed: 0 };
      const countRow = (revision, label) => {
        const entry = counts(revision);
        return h(
          "tr",
          { "data-revision": revision },
          h("td", { "data-label": "Revision" }, h("span", {}, String(revision), h("span", { class: "muted" }, ` (${label})`))),
          h("td", { "data-label": "Applied", "data-count": "applied" }, String(entry.applied)),
          h(
            "td",
            { "data-label": "Failed", "data-count": "failed", class: entry.failed ? "failed-count" : null },
            String(entry.failed),
          ),
        );
      };
      const promote = h("button", { type: "button", class: "button", id: "promote-rollout" }, "Promote to all devices");
      promote.addEventListener("click", () => decide("promote", active));
      const halt =
        active.state === "running"
          ? h("button", { type: "button", class: "button secondary danger", id: "halt-rollout" }, "Halt")
          : null;
      halt?.addEventListener("click", () => decide("halt", active));
      stagedView.replaceChildren(
        h(
          "p",
          { id: "staged-state", class: `alert ${active.state === "halted" ? "error" : "warning"}`, "data-state": active.state },
          stagedSentence(active),
        ),
        h(
          "div",
          { class: "table-wrap rollout-wrap" },
          table(
            { id: "staged-counts", class: "rollout" },
            "Devices on the staged and the stable revision",
            ["Revision", "Running it (applied)", "Failed to apply it"],
            h("tbody", {}, countRow(active.revision, "staged"), countRow(active.stable_revision, "stable")),
          ),
        ),
        h("div", { class: "form-actions" }, promote, halt),
      );
    }
    if (focusedId && !stagedSection.contains(document.activeElement)) {
      (document.getElementById(focusedId) ?? stagedStatus).focus();
    }
  };
  stagedSection.append(h("h2", { id: "staged-title" }, "Staged rollout"), stagedView, stagedForm, stagedStatus);

  /** Reads the configuration again (its revisions and staged revision; the editor's text stays). */
  const refreshConfiguration = async () => {
    try {
      const fresh = await get(configPath);
      configuration = fresh;
      describe();
    } catch {
      // The next event, or a reload, tries again.
    }
  };

  // The history: every revision, newest first; compare one with the current text, or revert to
  // it (its text saved as a new revision, which devices receive like any edit).
  const historySection = h("section", { id: "history", "aria-labelledby": "history-title" });
  const historyStatus = h("p", { id: "history-status", role: "status", tabindex: -1 });
  const diffView = h("div", { id: "history-diff-view" });
  let revisions = [];
  let olderCursor = null;

  const savedBy = (who) => {
    if (!who) return "before history was kept";
    if (who.startsWith("key:")) return "an organization key";
    return who;
  };

  const showDiff = (diff) => {
    const lines = diff.unified
      ? diff.unified.replace(/\n$/, "").split("\n").map((line) => {
          const kind = line.startsWith("+++") || line.startsWith("---")
            ? "file"
            : line.startsWith("@@")
              ? "hunk"
              : line.startsWith("+")
                ? "add"
                : line.startsWith("-")
                  ? "del"
                  : "same";
          return h("span", { class: `diff-line ${kind}` }, `${line}\n`);
        })
      : [];
    diffView.replaceChildren(
      h(
        "h3",
        { id: "history-diff-title", tabindex: -1 },
        `Revision ${diff.from_revision} → revision ${diff.to_revision}`,
      ),
      h(
        "p",
        { id: "history-diff-summary" },
        diff.unified
          ? `${plural(diff.lines_added, "line")} added, ${plural(diff.lines_removed, "line")} removed` +
              (diff.name_changed ? "; the name differs too." : ".")
          : diff.name_changed
            ? "The same text; only the name differs."
            : "The same text.",
      ),
      lines.length ? h("pre", { id: "history-diff", class: "diff" }, lines) : null,
    );
    diffView.querySelector("#history-diff-title").focus();
  };

  const compare = async (revision) => {
    historyStatus.className = "";
    historyStatus.textContent = "Comparing…";
    try {
      const diff = await get(`${configPath}/diff?from=${revision}&to=${configuration.revision}`);
      historyStatus.textContent = "";
      showDiff(diff);
    } catch (error) {
      historyStatus.className = "alert error";
      historyStatus.textContent = `The revisions could not be compared: ${errorMessage(error)}`;
    }
  };

  const revert = async (revision) => {
    const active = inProgress(rollout);
    if (
      !window.confirm(
        `Save the text of revision ${revision} as a new revision of “${configuration.name}”? ` +
          "Connected devices that have it assigned receive it at once." +
          (active ? ` This supersedes the staged rollout of revision ${active.revision}.` : ""),
      )
    ) {
      return;
    }
    historyStatus.className = "";
    historyStatus.textContent = "Reverting…";
    try {
      configuration = await post(`${configPath}/revisions/${revision}/revert`, {
        if_revision: editorRevision,
      });
      textarea.value = configuration.body ?? "";
      editorRevision = configuration.revision;
      editorBody = textarea.value;
      describe();
      await Promise.all([refreshRollout(), refreshHistory(), check()]);
      diffView.replaceChildren();
      historyStatus.className = "alert ok";
      historyStatus.textContent =
        `Reverted: the text of revision ${revision} is saved as revision ${configuration.revision}. ` +
        "Connected devices that have it assigned receive it now.";
      historyStatus.focus();
    } catch (error) {
      historyStatus.className = "alert error";
      historyStatus.textContent =
        error instanceof ApiError && error.code === "revision_mismatch"
          ? `Not reverted: someone else changed this configuration meanwhile (${error.message}).`
          : `Not reverted: ${errorMessage(error)}`;
      await refreshHistory();
    }
  };

  const renderHistory = () => {
    const rows = revisions.map((entry) => {
      const current = entry.revision === configuration.revision;
      const actions = [];
      if (!current) {
        const compareButton = h(
          "button",
          { type: "button", class: "button secondary small", "data-action": "compare" },
          "Compare with current",
        );
        compareButton.addEventListener("click", () => compare(entry.revision));
        const revertButton = h(
          "button",
          { type: "button", class: "button secondary small", "data-action": "revert" },
          "Revert to this",
        );
        revertButton.addEventListener("click", () => revert(entry.revision));
        actions.push(compareButton, " ", revertButton);
      }
      return h(
        "tr",
        { "data-revision": entry.revision },
        h(
          "td",
          { "data-label": "Revision" },
          String(entry.revision),
          current ? h("span", { class: "muted" }, " (current)") : null,
          entry.revision === configuration.staged_revision ? h("span", { class: "muted" }, " (staged)") : null,
        ),
        h("td", { "data-label": "Saved" }, formatTime(entry.saved_at)),
        h("td", { "data-label": "By", "data-field": "saved-by" }, savedBy(entry.saved_by)),
        h("td", { "data-label": "Name" }, entry.name),
        h("td", { "data-label": "Size" }, plural(entry.bytes, "byte")),
        h("td", { "data-label": "Actions", class: "history-actions" }, actions),
      );
    });
    const older = h(
      "button",
      { type: "button", class: "button secondary", id: "history-older", hidden: !olderCursor },
      "Show older revisions",
    );
    older.addEventListener("click", async () => {
      try {
        const page = await get(`${configPath}/revisions?limit=${HISTORY_PAGE}&cursor=${encodeURIComponent(olderCursor)}`);
        revisions = revisions.concat(page.items);
        olderCursor = page.next_cursor;
        renderHistory();
      } catch (error) {
        historyStatus.className = "alert error";
        historyStatus.textContent = `Older revisions could not be read: ${errorMessage(error)}`;
      }
    });
    historySection.replaceChildren(
      h("h2", { id: "history-title" }, "History"),
      h(
        "p",
        { class: "muted" },
        "Every saved revision, newest first. Reverting saves an old text as a new revision: revision numbers only grow.",
      ),
      h(
        "div",
        { class: "table-wrap" },
        table(
          { id: "history-revisions", class: "history" },
          "Revisions of this configuration",
          ["Revision", "Saved", "By", "Name", "Size", "Actions"],
          h("tbody", {}, rows),
        ),
      ),
      older,
      historyStatus,
      diffView,
    );
  };

  const refreshHistory = async () => {
    try {
      const page = await get(`${configPath}/revisions?limit=${HISTORY_PAGE}`);
      revisions = page.items;
      olderCursor = page.next_cursor;
      renderHistory();
    } catch (error) {
      historySection.replaceChildren(
        h("h2", { id: "history-title" }, "History"),
        h("p", { class: "alert error", role: "alert" }, `The history could not be read: ${errorMessage(error)}`),
      );
    }
  };

  const renderAssign = () => {
    const heading = h("h2", { id: "assign-title" }, "Assign to devices");
    if (devices.length === 0) {
      assignSection.replaceChildren(heading, h("p", { class: "muted", id: "assign-none" }, "No devices are paired yet."), assignResult);
      return;
    }
    const selectAll = h("input", { type: "checkbox", id: "assign-all" });
    const boxes = devices.map((device) =>
      h("input", { type: "checkbox", class: "device-pick", value: device.id, "data-device-id": device.id, id: `pick-${device.id}` }),
    );
    const assign = h("button", { type: "submit", class: "button", id: "assign-button", disabled: true }, "Assign to selected devices");
    const sync = () => {
      const checked = boxes.filter((box) => box.checked).length;
      selectAll.checked = checked === boxes.length;
      selectAll.indeterminate = checked > 0 && checked < boxes.length;
      assign.disabled = checked === 0;
      assign.textContent = checked ? `Assign to ${plural(checked, "device")}` : "Assign to selected devices";
    };
    selectAll.addEventListener("change", () => {
      for (const box of boxes) box.checked = selectAll.checked;
      sync();
    });
    for (const box of boxes) box.addEventListener("change", sync);
    const assignForm = h(
      "form",
      { id: "assign-form", class: "assign-form", novalidate: true },
      h(
        "fieldset",
        {},
        h("legend", {}, "Devices of this organization"),
        h("label", { class: "pick select-all", for: "assign-all" }, selectAll, ` Select all (${devices.length})`),
        h(
          "ul",
          { class: "device-picks" },
          devices.map((device, index) => {
            const current = device.configuration
              ? `now ${device.configuration.name} (rev. ${device.configuration.revision})`
              : "no configuration yet";
            return h(
              "li",
              {},
              h(
                "label",
                { class: "pick", for: `pick-${device.id}` },
                boxes[index],
                " ",
                h("span", { class: "pick-name" }, device.name),
                h("span", { class: "muted pick-detail" }, ` · ${device.model} · ${current}`),
              ),
            );
          }),
        ),
      ),
      assign,
    );
    assignForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const chosen = devices.filter((_, index) => boxes[index].checked);
      if (chosen.length === 0) return;
      assign.disabled = true;
      assignResult.className = "";
      assignResult.textContent = "Assigning…";
      try {
        const answer = await post(`${configPath}/assign`, { device_ids: chosen.map((device) => device.id) });
        const names = chosen.map((device) => device.name).join(", ");
        const message =
          `Assigned “${configuration.name}” to ${plural(answer.device_ids.length, "device")} (${names}). ` +
          "Connected devices receive it now.";
        [devices] = await Promise.all([getAll(`${base}/devices`), refreshRollout()]);
        renderAssign();
        assignResult.className = "alert ok";
        assignResult.textContent = message;
        // The form was rebuilt with the new assignments: focus goes to the result instead.
        assignResult.focus();
      } catch (error) {
        assignResult.className = "alert error";
        assignResult.textContent = `Nothing was assigned: ${errorMessage(error)}`;
        sync();
      }
    });
    assignSection.replaceChildren(heading, assignForm, assignResult);
    sync();
  };

  if (configuration) {
    renderRollout();
    renderStaged();
    renderAssign();
    await refreshHistory();
    // The rollout follows the live feed: devices applying, failing, pairing or being assigned
    // change its counts. The editor's text is never touched.
    let pending = null;
    // Whether an event other than a device's came since the last re-read: only devices'
    // events leave the configuration and its history as they were.
    let configurationChanged = false;
    watch(org, (name) => {
      if (!rolloutSection.isConnected) {
        stopWatching();
        return;
      }
      if (!["devices", "configurations", "rollout", "resync"].includes(name)) return;
      if (name !== "devices") configurationChanged = true;
      if (pending) return;
      pending = setTimeout(() => {
        pending = null;
        const reread = configurationChanged;
        configurationChanged = false;
        // A staged rollout that started, halted or promoted (here, elsewhere, or by itself)
        // changes the configuration's revisions as well as the counts; an edit elsewhere
        // (another admin, the API) adds a revision to the history.
        if (reread) refreshConfiguration();
        refreshRollout();
        if (reread) refreshHistory();
      }, 300);
    });
  }
  // show() takes nodes only (replaceChildren would print a null as "null").
  const sections = configuration ? [rolloutSection, stagedSection, historySection, assignSection] : [];
  show(TITLE, h("p", { class: "config-back" }, back), title, meta, ...(newDevicesNote ? [newDevicesNote] : []), form, ...sections);
  title.focus();
  if (!configuration) nameInput.focus();
  updateSave();
  await check();
}
