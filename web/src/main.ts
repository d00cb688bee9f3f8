import { createClient, ConnectError, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { durationMs, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  CdcSlotStage,
  CheckStatus,
  EventType,
  MigrationService,
  Phase,
  type Migration,
  type MigrationEvent,
} from "../../src/gen/migration/v1/migration_pb.js";
import { CampaignService, CampaignState, WaveState, type Campaign } from "../../src/gen/migration/v1/campaign_pb.js";

/** The same API the CLI and grpcurl use: Connect over this page's own origin (no second API). */
const transport = createConnectTransport({ baseUrl: location.origin });
const api: Client<typeof MigrationService> = createClient(MigrationService, transport);
const campaigns: Client<typeof CampaignService> = createClient(CampaignService, transport);

const ROLES = ["viewer", "operator", "approver", "admin"];
const view = document.getElementById("view")!;
const errorBox = document.getElementById("error")!;

/** Anything that runs until the view changes: streams and timers. */
let disposers: (() => void)[] = [];
function onLeave(fn: () => void) {
  disposers.push(fn);
}

function esc(s: unknown): string {
  return String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
const phaseName = (p: Phase) => Phase[p] ?? "UNSPECIFIED";
const when = (t: Timestamp | undefined) => (t ? new Date(timestampMs(t)).toLocaleTimeString() : "");
const bytes = (n: bigint | number) => {
  const v = Number(n);
  return v >= 1 << 20 ? `${(v / (1 << 20)).toFixed(1)} MiB` : v >= 1024 ? `${(v / 1024).toFixed(1)} KiB` : `${v} B`;
};

function showError(e: unknown) {
  const ce = ConnectError.from(e);
  errorBox.textContent = `${ce.code ? `${codeName(ce.code)}: ` : ""}${ce.rawMessage}`;
  errorBox.hidden = false;
}
function clearError() {
  errorBox.hidden = true;
  errorBox.textContent = "";
}
function codeName(c: number): string {
  return (
    [
      "OK",
      "CANCELLED",
      "UNKNOWN",
      "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED",
      "NOT_FOUND",
      "ALREADY_EXISTS",
      "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION",
      "ABORTED",
      "OUT_OF_RANGE",
      "UNIMPLEMENTED",
      "INTERNAL",
      "UNAVAILABLE",
      "DATA_LOSS",
      "UNAUTHENTICATED",
    ][c] ?? String(c)
  );
}

/** Asks before acting, saying what will happen; resolves true on Confirm. */
function confirmAction(title: string, text: string): Promise<boolean> {
  const d = document.getElementById("confirm") as HTMLDialogElement;
  document.getElementById("confirm-title")!.textContent = title;
  document.getElementById("confirm-text")!.textContent = text;
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.showModal();
    (document.getElementById("confirm-ok") as HTMLButtonElement).focus();
  });
}

async function rolesOf(names: string[]): Promise<Record<string, string>> {
  const r = await api.getAccess({ databaseNames: [...new Set(names)].slice(0, 500) });
  document.getElementById("who")!.textContent = r.identity;
  return r.roles;
}
const may = (role: string | undefined, need: string) =>
  role !== undefined && ROLES.indexOf(role) >= ROLES.indexOf(need);

// ---------- the fleet ----------

async function fleet() {
  view.innerHTML = `<h1>Fleet</h1>
    <div class="filters">
      <label>Team <select id="f-team"><option value="">all</option></select></label>
      <label>Database <input id="f-db" placeholder="name contains"></label>
      <label>Phase <select id="f-phase"><option value="">all</option>${Object.values(Phase)
        .filter((v) => typeof v === "string" && v !== "UNSPECIFIED")
        .map((p) => `<option>${p}</option>`)
        .join("")}</select></label>
    </div>
    <div class="chips" id="counts" aria-label="migrations by phase"></div>
    <h2>Migrations</h2>
    <table id="migrations"><thead><tr><th>Database</th><th>Team</th><th>Phase</th><th>Migration</th><th>Updated</th></tr></thead><tbody></tbody></table>
    <h2>Campaigns</h2>
    <table id="campaigns"><thead><tr><th>Name</th><th>State</th><th>Progress</th><th>Waves</th><th>Created by</th></tr></thead><tbody></tbody></table>`;
  const teamOf = new Map<string, string>();
  let pageToken = "";
  do {
    const r = await api.listDatabases({ pageSize: 500, pageToken });
    for (const d of r.databases) teamOf.set(d.name, d.team);
    pageToken = r.nextPageToken;
  } while (pageToken);
  const teamSelect = document.getElementById("f-team") as HTMLSelectElement;
  for (const t of [...new Set(teamOf.values())].sort()) teamSelect.add(new Option(t, t));
  let migrations: Migration[] = [];
  let camps: Campaign[] = [];
  const draw = () => {
    const team = teamSelect.value;
    const db = (document.getElementById("f-db") as HTMLInputElement).value.trim();
    const phase = (document.getElementById("f-phase") as HTMLSelectElement).value;
    const shown = migrations.filter(
      (m) =>
        (!team || teamOf.get(m.spec!.databaseName) === team) &&
        (!db || m.spec!.databaseName.includes(db)) &&
        (!phase || phaseName(m.phase) === phase),
    );
    const counts = new Map<string, number>();
    for (const m of shown) counts.set(phaseName(m.phase), (counts.get(phaseName(m.phase)) ?? 0) + 1);
    document.getElementById("counts")!.innerHTML =
      `<span class="chip">${shown.length} migrations</span>` +
      [...counts].map(([p, n]) => `<span class="chip">${esc(p)} ${n}</span>`).join("");
    document.querySelector("#migrations tbody")!.innerHTML = shown
      .map(
        (m) =>
          `<tr><td><a href="#/m/${esc(m.id)}">${esc(m.spec!.databaseName)}</a></td><td>${esc(teamOf.get(m.spec!.databaseName) ?? "")}</td><td class="phase">${esc(phaseName(m.phase))}${m.paused ? " (paused)" : ""}</td><td class="muted">${esc(m.id)}</td><td>${when(m.updatedAt)}</td></tr>`,
      )
      .join("");
    document.querySelector("#campaigns tbody")!.innerHTML = camps
      .filter((c) => !team || c.items.some((i) => i.team === team))
      .map((c) => {
        const done = (c.phases.COMPLETED ?? 0) + (c.phases.FINALIZED ?? 0);
        return `<tr><td><a href="#/c/${esc(c.id)}">${esc(c.spec?.name)}</a></td><td class="phase">${esc(CampaignState[c.state])}</td><td>${done} of ${c.items.length} completed</td><td>${c.waves.map((w) => esc(WaveState[w.state]).toLowerCase()).join(", ")}</td><td>${esc(c.createdBy)}</td></tr>`;
      })
      .join("");
  };
  for (const id of ["f-team", "f-db", "f-phase"]) document.getElementById(id)!.addEventListener("input", draw);
  // Migrations live from WatchMigrations (every one now, then each as it changes); campaigns listed every 2 s.
  const byId = new Map<string, Migration>();
  const abort = new AbortController();
  onLeave(() => abort.abort());
  let pending: ReturnType<typeof setTimeout> | undefined;
  void (async () => {
    try {
      for await (const res of api.watchMigrations({}, { signal: abort.signal })) {
        byId.set(res.migration!.id, res.migration!);
        // Many messages at once (the first listing, a burst of changes) are drawn once.
        pending ??= setTimeout(() => {
          pending = undefined;
          migrations = [...byId.values()].sort((a, b) => timestampMs(b.createdAt!) - timestampMs(a.createdAt!));
          draw();
        }, 50);
      }
    } catch (e) {
      if (!abort.signal.aborted) showError(e);
    }
  })();
  const loadCampaigns = async () => {
    camps = (await campaigns.listCampaigns({ pageSize: 200 })).campaigns;
    draw();
  };
  await loadCampaigns();
  await rolesOf([...teamOf.keys()].slice(0, 500));
  const timer = setInterval(() => void loadCampaigns().catch(showError), 2000);
  onLeave(() => clearInterval(timer));
}

// ---------- one migration ----------

const ACTIONS: {
  name: string;
  label: string;
  need: string;
  shows: (m: Migration) => boolean;
  says: (m: Migration) => string;
  run: (m: Migration) => Promise<unknown>;
  style?: string;
}[] = [
  {
    name: "approve",
    label: "Approve cutover",
    need: "approver",
    shows: (m) => m.phase === Phase.READY_FOR_CUTOVER && !m.cutoverApproved,
    says: (m) =>
      `The source of ${m.spec!.databaseName} will be fenced (writes refused for the cutover window), the target promoted once it replayed the last write, and every proxy routed to it.`,
    run: (m) => api.approveCutover({ id: m.id, reason: "approved in the console" }),
    style: "primary",
  },
  {
    name: "pause",
    label: "Pause",
    need: "operator",
    shows: (m) =>
      !m.paused &&
      ["PENDING", "PREFLIGHT", "PROVISIONING", "REPLICATING", "READY_FOR_CUTOVER", "VERIFYING"].includes(
        phaseName(m.phase),
      ),
    says: () => "The migration halts at its next safe point and waits for Resume; replication keeps running.",
    run: (m) => api.pauseMigration({ id: m.id, reason: "paused in the console" }),
  },
  {
    name: "resume",
    label: "Resume",
    need: "operator",
    shows: (m) => m.paused,
    says: () => "The migration carries on from where it halted.",
    run: (m) => api.resumeMigration({ id: m.id, reason: "resumed in the console" }),
  },
  {
    name: "rollback",
    label: "Roll back",
    need: "approver",
    shows: (m) => ["PROMOTING", "CDC_RESTORE", "ROUTING", "VERIFYING", "COMPLETED"].includes(phaseName(m.phase)),
    says: (m) =>
      `Traffic of ${m.spec!.databaseName} goes back to the source: the target is fenced, its writes since cutover applied to the source, and the proxies routed back.`,
    run: (m) => api.rollbackMigration({ id: m.id, reason: "rolled back in the console" }),
    style: "danger",
  },
  {
    name: "finalize",
    label: "Finalize",
    need: "admin",
    shows: (m) => m.phase === Phase.COMPLETED,
    says: () =>
      "Rollback is no longer possible afterwards: reverse replication is dropped and the old source retired as the spec says.",
    run: (m) => api.finalizeMigration({ id: m.id, reason: "finalized in the console" }),
    style: "danger",
  },
];

function lagChart(points: { t: number; lag: number }[], threshold: number): string {
  const W = 600;
  const H = 180;
  const pad = 30;
  const max = Math.max(threshold * 1.2, ...points.map((p) => p.lag), 1);
  const t0 = points[0]?.t ?? 0;
  const span = Math.max(60_000, (points[points.length - 1]?.t ?? 0) - t0);
  const x = (t: number) => pad + ((t - t0) / span) * (W - pad - 10);
  const y = (v: number) => H - pad - (v / max) * (H - pad - 10);
  const line = points.map((p) => `${x(p.t).toFixed(1)},${y(p.lag).toFixed(1)}`).join(" ");
  return `<svg id="lag-chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="replication lag in bytes over time against the gate's threshold">
    <line class="threshold" x1="${pad}" x2="${W - 10}" y1="${y(threshold)}" y2="${y(threshold)}"></line>
    <text x="${pad + 4}" y="${y(threshold) - 4}">gate: ${esc(bytes(threshold))}</text>
    <text x="4" y="${H - pad + 4}">0</text><text x="${pad}" y="${H - 8}">last ${Math.round(span / 1000)} s</text>
    <polyline class="lag" points="${line}" data-points="${points.length}"></polyline>
  </svg>`;
}

async function migrationPage(id: string) {
  view.innerHTML = `<p class="muted">loading migration ${esc(id)}…</p>`;
  let m = (await api.getMigration({ id })).migration!;
  const roles = await rolesOf([m.spec!.databaseName]);
  const role = roles[m.spec!.databaseName];
  const events: MigrationEvent[] = [];
  const lag: { t: number; lag: number }[] = [];
  let routing = "";
  const threshold = Number(m.spec?.lagPolicy?.maxLagBytes || 16n * 1024n * 1024n);
  view.innerHTML = `<h1><span id="m-db"></span> <span class="phase" id="m-phase"></span></h1>
    <p class="muted" id="m-sub"></p>
    <div class="actions" id="m-actions"></div>
    <div class="grid">
      <section class="card"><h2>Phase timeline</h2><table id="m-timeline"><thead><tr><th>Phase</th><th>Entered</th><th>Lasted</th><th>By</th></tr></thead><tbody></tbody></table></section>
      <section class="card"><h2>Replication lag and WAL rate</h2><div id="m-lag"></div><p id="m-rate" class="muted"></p></section>
    </div>
    <h2>Checks</h2>
    <table id="m-checks"><thead><tr><th>Check</th><th>Status</th><th>Measured</th><th>Threshold</th><th>Remedy</th></tr></thead><tbody></tbody></table>
    <div class="grid">
      <section class="card"><h2>CDC slots and consumers</h2><table id="m-cdc"><thead><tr><th>Slot</th><th>Position</th><th>Stage and consumers</th><th></th></tr></thead><tbody></tbody></table></section>
      <section class="card"><h2>Rollback readiness</h2><dl class="kv" id="m-reverse"></dl></section>
    </div>
    <h2>Routing</h2><table id="m-routing"><thead><tr><th>Proxy</th><th>Connected</th><th>ACKed</th><th>NACKed</th></tr></thead><tbody></tbody></table>
    <h2>Events</h2><div class="events"><table id="m-events"><thead><tr><th style="width:110px">At</th><th style="width:170px">Type</th><th>What</th><th style="width:240px">Actor</th></tr></thead><tbody></tbody></table></div>`;

  const draw = () => {
    document.getElementById("m-db")!.textContent = m.spec!.databaseName;
    document.getElementById("m-phase")!.textContent = phaseName(m.phase) + (m.paused ? " (paused)" : "");
    document.getElementById("m-sub")!.textContent =
      `migration ${m.id} · ${m.spec!.source?.id} → ${m.spec!.target?.id} · created by ${m.createdBy}` +
      (m.cutoverApproved ? " · cutover approved" : "") +
      (m.lastError ? ` · last error: ${m.lastError.code} ${m.lastError.message}` : "");
    const buttons = ACTIONS.filter((a) => a.shows(m) && may(role, a.need));
    const bar = document.getElementById("m-actions")!;
    bar.replaceChildren(
      ...buttons.map((a) => {
        const b = document.createElement("button");
        b.textContent = a.label;
        b.dataset.action = a.name;
        if (a.style) b.className = a.style;
        b.addEventListener("click", async () => {
          if (!(await confirmAction(`${a.label}: ${m.spec!.databaseName}?`, a.says(m)))) return;
          clearError();
          try {
            await a.run(m);
            m = (await api.getMigration({ id })).migration!;
            draw();
          } catch (e) {
            showError(e);
          }
        });
        return b;
      }),
    );
    const hist = m.history;
    document.querySelector("#m-timeline tbody")!.innerHTML = hist
      .map((h, i) => {
        const start = h.at ? timestampMs(h.at) : 0;
        const end = hist[i + 1]?.at ? timestampMs(hist[i + 1]!.at!) : Date.now();
        return `<tr><td class="phase">${esc(phaseName(h.to))}</td><td>${when(h.at)}</td><td>${((end - start) / 1000).toFixed(1)} s</td><td>${esc(h.actor)}</td></tr>`;
      })
      .join("");
    document.getElementById("m-lag")!.innerHTML = lagChart(lag, threshold);
    const r = m.replication;
    document.getElementById("m-rate")!.textContent = r
      ? `replica ${r.state || "not connected"} · lag ${r.lagBytes !== undefined ? bytes(r.lagBytes) : "unknown"} · WAL ${bytes(Math.round(r.walBytesPerSecond))}/s`
      : "no sample yet";
    document.querySelector("#m-checks tbody")!.innerHTML = m.checks
      .map(
        (c) =>
          `<tr><td>${esc(c.name)}</td><td class="status-${esc(CheckStatus[c.status])}">${esc(CheckStatus[c.status])}</td><td class="wrap">${esc(c.measured)}</td><td class="wrap">${esc(c.threshold)}</td><td class="wrap">${esc(c.remedy || c.message)}</td></tr>`,
      )
      .join("");
    document.querySelector("#m-cdc tbody")!.innerHTML = m.cdcSlots
      .map(
        (s) =>
          `<tr><td>${esc(s.slotName)}</td><td>${esc(s.confirmedFlushLsn)}</td><td>${esc(CdcSlotStage[s.stage] ?? "")}${s.consumer ? ` · ${esc(s.consumer)}` : ""}${s.watchingConsumers.length ? ` · watching: ${esc(s.watchingConsumers.join(", "))}` : ""}</td><td>${
            !s.active && may(role, "operator")
              ? `<button data-drop="${esc(s.slotName)}" class="danger">Drop inactive slot</button>`
              : ""
          }</td></tr>`,
      )
      .join("");
    for (const b of document.querySelectorAll<HTMLButtonElement>("[data-drop]")) {
      b.addEventListener("click", async () => {
        const slot = b.dataset.drop!;
        if (
          !(await confirmAction(
            `Drop slot ${slot}?`,
            `The inactive logical slot ${slot} is dropped on the source: the WAL it holds is freed, and its consumer must start over from a new slot.`,
          ))
        )
          return;
        clearError();
        try {
          await api.dropInactiveSlot({ id, slotName: slot, reason: "dropped in the console" });
        } catch (e) {
          showError(e);
        }
      });
    }
    const rev = m.reverse;
    document.getElementById("m-reverse")!.innerHTML = rev
      ? [
          ["reverse lag", bytes(rev.lagBytes)],
          ["WAL kept for it", bytes(rev.retainedBytes)],
          ["applies", `${bytes(Math.round(rev.applyBytesPerSecond))}/s`],
          [
            "a rollback would drain in",
            rev.rollbackDrainEstimate ? `${(durationMs(rev.rollbackDrainEstimate) / 1000).toFixed(1)} s` : "—",
          ],
          ["sampled", when(rev.sampledAt)],
          ["rollback possible", rev.stoppedReason ? `no: ${rev.stoppedReason}` : "yes, losslessly"],
        ]
          .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`)
          .join("")
      : `<dt>reverse replication</dt><dd>not set up yet (it starts at promotion)</dd>`;
    document.querySelector("#m-routing tbody")!.innerHTML = routing;
    document.querySelector("#m-events tbody")!.innerHTML = events
      .slice(-200)
      .reverse()
      .map(
        (e) =>
          `<tr><td>${when(e.at)}</td><td>${esc(EventType[e.type])}</td><td class="wrap">${esc(e.message || (e.transition ? `${phaseName(e.transition.from)} → ${phaseName(e.transition.to)}` : ""))}</td><td>${esc(e.actor)}</td></tr>`,
      )
      .join("");
  };

  const abort = new AbortController();
  onLeave(() => abort.abort());
  // The event log, live: every event as it commits.
  void (async () => {
    try {
      for await (const res of api.watchMigration({ id }, { signal: abort.signal })) {
        if (res.event) events.push(res.event);
        m.phase = res.phase;
        draw();
      }
    } catch (e) {
      if (!abort.signal.aborted) showError(e);
    }
  })();
  // Lag moves between events: the migration is read again every second, and each sample is a point of the chart.
  const refresh = async () => {
    m = (await api.getMigration({ id }, { signal: abort.signal })).migration!;
    const r = m.replication;
    if (r?.sampledAt) {
      const t = timestampMs(r.sampledAt);
      if (lag[lag.length - 1]?.t !== t) lag.push({ t, lag: Number(r.lagBytes ?? 0n) });
      if (lag.length > 600) lag.shift();
    }
    const rs = (await api.getRoutingStatus({ databaseName: m.spec!.databaseName }, { signal: abort.signal })).status;
    routing = (rs?.proxies ?? [])
      .map(
        (p) =>
          `<tr><td>${esc(p.nodeId)}</td><td>${p.connected ? "yes" : "no"}</td><td>${esc(p.ackedVersion)}</td><td class="wrap">${esc(p.nackedVersion ? `${p.nackedVersion}: ${p.nackMessage}` : "")}</td></tr>`,
      )
      .join("");
    draw();
  };
  await refresh().catch(showError);
  const timer = setInterval(() => void refresh().catch(() => {}), 1000);
  onLeave(() => clearInterval(timer));
}

// ---------- one campaign ----------

async function campaignPage(id: string) {
  let c = (await campaigns.getCampaign({ id })).campaign!;
  const roles = await rolesOf(c.items.map((i) => i.databaseName));
  const all = (need: string) => c.items.every((i) => may(roles[i.databaseName], need));
  view.innerHTML = `<h1>Campaign <span id="c-name"></span> <span class="phase" id="c-state"></span></h1>
    <p class="muted" id="c-sub"></p><div class="actions" id="c-actions"></div>
    <div class="chips" id="c-phases"></div>
    <h2>Waves</h2><table id="c-waves"><thead><tr><th>Wave</th><th>State</th><th>Size</th><th>Phases</th><th>Approved by</th></tr></thead><tbody></tbody></table>
    <h2>Databases</h2><table id="c-items"><thead><tr><th>Database</th><th>Team</th><th>Wave</th><th>Phase</th><th>Waiting for</th></tr></thead><tbody></tbody></table>`;
  const act = async (title: string, text: string, run: () => Promise<{ campaign?: Campaign }>) => {
    if (!(await confirmAction(title, text))) return;
    clearError();
    try {
      c = (await run()).campaign ?? c;
      draw();
    } catch (e) {
      showError(e);
    }
  };
  const draw = () => {
    const s = c.spec!;
    document.getElementById("c-name")!.textContent = s.name;
    document.getElementById("c-state")!.textContent =
      CampaignState[c.state] + (c.pauseReason ? `: ${c.pauseReason}` : "");
    document.getElementById("c-sub")!.textContent =
      `${s.maxReplicating} in flight, ${s.maxCutovers} cutovers at once · windows: ${s.windows.map((w) => `${w.days.join(",") || "every day"} ${w.start}-${w.end} ${w.timeZone || "UTC"}`).join("; ") || "any time"}` +
      (c.eta ? ` · ETA ${Math.round(durationMs(c.eta) / 1000)} s` : "");
    document.getElementById("c-phases")!.innerHTML = Object.entries(c.phases)
      .map(([p, n]) => `<span class="chip">${esc(p)} ${n}</span>`)
      .join("");
    document.querySelector("#c-waves tbody")!.innerHTML = c.waves
      .map(
        (w) =>
          `<tr><td>${w.index}</td><td>${esc(WaveState[w.state])}</td><td>${w.size}</td><td>${esc(
            Object.entries(w.phases)
              .map(([p, n]) => `${p} ${n}`)
              .join(", "),
          )}</td><td>${esc(w.approvedBy.join(", "))}</td></tr>`,
      )
      .join("");
    document.querySelector("#c-items tbody")!.innerHTML = c.items
      .map(
        (i) =>
          `<tr><td>${i.migrationId ? `<a href="#/m/${esc(i.migrationId)}">${esc(i.databaseName)}</a>` : esc(i.databaseName)}</td><td>${esc(i.team)}</td><td>${i.wave}</td><td class="phase">${i.phase ? esc(phaseName(i.phase)) : "not started"}</td><td>${esc(i.waitingFor)}</td></tr>`,
      )
      .join("");
    const bar = document.getElementById("c-actions")!;
    const buttons: HTMLButtonElement[] = [];
    const button = (label: string, onClick: () => void, style = "") => {
      const b = document.createElement("button");
      b.textContent = label;
      b.className = style;
      b.addEventListener("click", onClick);
      buttons.push(b);
    };
    if (c.state === CampaignState.RUNNING && all("operator"))
      button(
        "Pause",
        () =>
          void act(
            `Pause ${s.name}?`,
            "No migration starts and no cutover is approved until resumed; cutovers under way finish.",
            () => campaigns.pauseCampaign({ id, reason: "paused in the console" }),
          ),
      );
    if (c.state === CampaignState.PAUSED && all("approver"))
      button(
        "Resume",
        () =>
          void act(
            `Resume ${s.name}?`,
            "The campaign starts migrations and approves cutovers again; the failures it has seen no longer count.",
            () => campaigns.resumeCampaign({ id, reason: "resumed in the console" }),
          ),
        "primary",
      );
    for (const w of c.waves.filter((w) => w.state === WaveState.AWAITING_APPROVAL))
      if (all("approver"))
        button(
          `Approve wave ${w.index}`,
          () =>
            void act(`Approve wave ${w.index}?`, `The ${w.size} migrations of wave ${w.index} may start.`, () =>
              campaigns.approveWave({ id, wave: w.index, reason: "approved in the console" }),
            ),
          "primary",
        );
    if ((c.state === CampaignState.RUNNING || c.state === CampaignState.PAUSED) && all("operator"))
      button(
        "Cancel",
        () =>
          void act(
            `Cancel ${s.name}?`,
            "Nothing new starts and no cutover is interrupted; migrations not cut over yet wait in READY_FOR_CUTOVER.",
            () => campaigns.cancelCampaign({ id, reason: "cancelled in the console" }),
          ),
        "danger",
      );
    bar.replaceChildren(...buttons);
  };
  draw();
  const abort = new AbortController();
  onLeave(() => abort.abort());
  void (async () => {
    try {
      for await (const res of campaigns.watchCampaign({ id }, { signal: abort.signal })) {
        c = res.campaign!;
        draw();
      }
    } catch (e) {
      if (!abort.signal.aborted) showError(e);
    }
  })();
}

// ---------- routing between views ----------

async function route() {
  for (const d of disposers) d();
  disposers = [];
  clearError();
  const [, kind, id] = location.hash.split("/");
  try {
    if (kind === "m" && id) await migrationPage(decodeURIComponent(id));
    else if (kind === "c" && id) await campaignPage(decodeURIComponent(id));
    else await fleet();
  } catch (e) {
    showError(e);
  }
  view.focus();
}
window.addEventListener("hashchange", () => void route());
void route();
