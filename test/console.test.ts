import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource } from "../testing/sample.js";
import { destroyClusters } from "./helpers/clusters.js";
import { campaignClient, migrationClient, unary, type AnyClient } from "./helpers/grpc-clients.js";
import { localSpec, waitForPhase } from "./helpers/migrations.js";
import { startServiceProcess, tempDir, type ServiceProcess } from "./helpers/service-process.js";

/** Debian's chromium package (.ci/run installs it); nothing is downloaded. */
const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = resolve(import.meta.dirname, "../test-artifacts/console");
// Without the background-networking flags Chromium keeps trying hosts this closed network refuses.
const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const policy = (role: string) => `grants:\n  - identities: ["anonymous"]\n    databases: ["**"]\n    role: ${role}\n`;

/**
 * The web console in headless Chromium against a real service (cleartext, under a policy for the anonymous caller)
 * driving real local clusters: the fleet lists a running migration; its page shows the phase moving and the lag chart
 * drawing; approving from the page (by keyboard) moves it to QUIESCING; an action the policy no longer allows shows
 * the service's refusal, and a reloaded page no longer offers it; a campaign's page shows its waves and pause.
 */
describe("the web console, in a real browser", () => {
  const tmp = tempDir("console");
  const provider = new LocalProvider(join(tmp.dir, "local"));
  const policyFile = join(tmp.dir, "policy.yaml");
  let svc: ServiceProcess;
  let api: AnyClient;
  let browser: Browser;
  let page: Page;
  let base: string;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    if (!existsSync(CHROMIUM))
      throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (.ci/run does)`);
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(policyFile, policy("admin"));
    await Promise.all(["shop-a-src", "shop-b-src"].map((s) => createSampleSource(provider, s, { rows: 50 })));
    svc = await startServiceProcess([
      "--data-dir",
      join(tmp.dir, "data"),
      "--local-dir",
      join(tmp.dir, "local"),
      "--policy",
      policyFile,
      "--reload-ms",
      "200",
    ]);
    base = `http://${svc.address}/`;
    api = migrationClient(svc.address);
    for (const [db, src] of [
      ["shop-a-db", "shop-a-src"],
      ["shop-b-db", "shop-b-src"],
      ["shop-c-db", "shop-c-src"],
    ]) {
      await unary(api, "RegisterDatabase", {
        database: { name: db, provider: "PROVIDER_LOCAL", instances: [{ id: src }], team: "shop", labels: {} },
      });
    }
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    api?.close();
    await svc?.stop();
    await destroyClusters(provider);
    tmp.remove();
  });

  it("the fleet page lists a running migration and follows it live", async () => {
    ids["shop-b-db"] = (
      await unary(api, "CreateMigration", { spec: localSpec("shop-b-db", "shop-b-src", "shop-b-next") })
    ).migration.id;
    await page.goto(base);
    const row = page.locator("#migrations tbody tr", { hasText: "shop-b-db" });
    await row.waitFor({ timeout: 15_000 });
    expect(await row.locator("td").nth(1).textContent()).toBe("shop");
    // Live, without a reload: the row follows the migration's phase (WatchMigrations).
    await expect.poll(() => row.locator("td").nth(2).textContent(), { timeout: 90_000 }).toBe("READY_FOR_CUTOVER");
    expect(await page.locator("#who").textContent()).toBe("anonymous");
    await page.screenshot({ path: join(ARTIFACTS, "fleet.png") });
  });

  it("a migration's page shows its phase moving and the lag chart drawing points", async () => {
    ids["shop-a-db"] = (
      await unary(api, "CreateMigration", { spec: localSpec("shop-a-db", "shop-a-src", "shop-a-next") })
    ).migration.id;
    await page.goto(`${base}#/m/${ids["shop-a-db"]}`);
    const phase = page.locator("#m-phase");
    await phase.waitFor();
    const first = await phase.textContent();
    await expect.poll(() => phase.textContent(), { timeout: 90_000, interval: 250 }).toBe("READY_FOR_CUTOVER");
    expect(first).not.toBe("READY_FOR_CUTOVER");
    await expect
      .poll(async () => Number(await page.locator("#lag-chart polyline").getAttribute("data-points")), {
        timeout: 15_000,
      })
      .toBeGreaterThanOrEqual(2);
    // Its timeline lists each phase it went through.
    expect(await page.locator("#m-timeline tbody tr").count()).toBeGreaterThanOrEqual(4);
    expect(await page.locator("#m-checks tbody tr").count()).toBeGreaterThan(0);
    await page.screenshot({ path: join(ARTIFACTS, "migration.png"), fullPage: true });
  }, 120_000);

  it("approving from the page, by keyboard, moves a manual migration to QUIESCING", async () => {
    const approve = page.locator('[data-action="approve"]');
    await approve.focus();
    await page.keyboard.press("Enter");
    const dialog = page.locator("dialog#confirm");
    await dialog.waitFor({ state: "visible" });
    expect(await dialog.textContent()).toContain("The source of shop-a-db will be fenced");
    await page.screenshot({ path: join(ARTIFACTS, "confirm.png") });
    // Confirm has the focus: Enter confirms.
    await page.keyboard.press("Enter");
    const seen = await waitForPhase(api, ids["shop-a-db"]!, ["PHASE_QUIESCING", "PHASE_COMPLETED", "PHASE_FAILED"]);
    expect(seen.phase).toBe("PHASE_QUIESCING");
    const approval = seen.events.find((e) => e.type === "EVENT_TYPE_OPERATOR_ACTION");
    expect(approval.message).toBe("approve: approved in the console");
    await expect.poll(() => page.locator("#m-phase").textContent(), { timeout: 60_000 }).toBe("COMPLETED");
  }, 120_000);

  it("an action the service refuses shows its message; a reloaded page no longer offers it", async () => {
    await waitForPhase(api, ids["shop-b-db"]!, ["PHASE_READY_FOR_CUTOVER"]);
    await page.goto(`${base}#/m/${ids["shop-b-db"]}`);
    const approve = page.locator('[data-action="approve"]');
    await approve.waitFor();
    // The policy changes under the open page: the caller may only view now.
    writeFileSync(policyFile, policy("viewer"));
    await new Promise((r) => setTimeout(r, 1500));
    await approve.click();
    await page.locator("#confirm-ok").click();
    const error = page.locator("#error");
    await error.waitFor({ state: "visible" });
    expect(await error.textContent()).toMatch(
      /^PERMISSION_DENIED: anonymous may not approve migration .* for database "shop-b-db" \(instance local:shop-b-src\): that needs role approver/,
    );
    await page.screenshot({ path: join(ARTIFACTS, "refused.png") });
    await page.reload();
    await page.locator("#m-phase").waitFor();
    await expect.poll(() => page.locator("#m-actions button").count()).toBe(0);
    expect((await unary(api, "GetMigration", { id: ids["shop-b-db"] })).migration.cutover_approved).toBe(false);
  }, 120_000);

  it("a campaign's page shows its waves, its databases and why it paused", async () => {
    writeFileSync(policyFile, policy("admin"));
    await new Promise((r) => setTimeout(r, 1000));
    // shop-c's source does not exist: its migration fails, and the campaign pauses.
    const campaigns = campaignClient(svc.address);
    const { campaign } = await unary(campaigns, "CreateCampaign", {
      spec: { name: "shop-c", select: { names: ["shop-c-db"] }, targets: { id_template: "{source}-next" } },
    });
    campaigns.close();
    await page.goto(`${base}#/c/${campaign.id}`);
    await expect
      .poll(() => page.locator("#c-state").textContent(), { timeout: 60_000 })
      .toMatch(/^PAUSED: 1 migration\(s\) failed/);
    expect(await page.locator("#c-waves tbody tr").count()).toBe(1);
    expect(await page.locator("#c-items tbody tr td").first().textContent()).toBe("shop-c-db");
    expect(await page.locator("#c-actions button").allTextContents()).toEqual(["Resume", "Cancel"]);
    await page.screenshot({ path: join(ARTIFACTS, "campaign.png") });
  }, 90_000);
});
