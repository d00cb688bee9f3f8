import { ConnectError, type Code } from "@connectrpc/connect";
import type { Outcome } from "../../src/engine/step-env.js";
import { STEPS } from "../../src/engine/steps.js";
import { stepEnv, type EnvOptions, type World } from "./fake-engine.js";

/** Runs the phase's step once in a fresh env over the world. */
export async function run(world: World, opts: EnvOptions) {
  const env = stepEnv(world, opts);
  const outcome = await STEPS[opts.phase]!(env);
  return { env, outcome };
}

export const to = (o: Outcome) => ("to" in o ? o.to : `wait ${o.waitMs}`);

export async function codeOf(p: Promise<unknown>): Promise<Code> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e).code;
  }
  throw new Error("expected the step to fail");
}

/** A world whose target exists and replays the source (the state after PROVISIONING). */
export async function replicating(world: World) {
  await world.provider.createReplica({ id: "billing" }, { id: "billing-aurora" }, "m-1");
}

/** A world right after promotion, routed to the source, with reverse replication prepared. */
export async function promoted(world: World) {
  await replicating(world);
  await world.router.route("billing-db", await world.provider.endpoint({ id: "billing" }), 1000);
  world.provider.instance({ id: "billing" }).fenced = true;
  await world.provider.promote({ id: "billing" }, { id: "billing-aurora" });
}
