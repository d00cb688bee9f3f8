import { fromJson, toJson } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import {
  CampaignSchema,
  type CampaignService,
  CampaignSpecSchema,
  CampaignState,
  WaveState,
  type Campaign,
} from "../gen/migration/v1/campaign_pb.js";
import { documentFromFile, SpecInputError } from "./spec-input.js";

/** A usage mistake: says what to type instead. */
export class CampaignUsageError extends Error {}

export const CAMPAIGN_VERBS = ["create", "list", "get", "watch", "pause", "resume", "cancel", "approve-wave"] as const;

const line = (c: Campaign): void => void process.stdout.write(JSON.stringify(toJson(CampaignSchema, c)) + "\n");

/** One line a person can read at a glance: state, phase counts, waves, ETA. */
export function campaignSummary(c: Campaign): string {
  const phases = Object.entries(c.phases)
    .map(([p, n]) => `${p} ${n}`)
    .join(", ");
  const waves = c.waves.map((w) => `${w.index}:${WaveState[w.state].toLowerCase()}`).join(" ");
  const eta = c.eta ? `, ETA ${Math.round(durationMs(c.eta) / 1000)} s` : "";
  const reason = c.pauseReason ? ` (${c.pauseReason})` : "";
  return `${c.spec?.name} ${CampaignState[c.state]}${reason}: ${phases}; waves ${waves}${eta}`;
}

/** `pgshift ctl campaign VERB …`: the campaign API from a terminal or a script (JSON lines on stdout). */
export async function campaignCommand(
  client: Client<typeof CampaignService>,
  verb: string | undefined,
  arg: string | undefined,
  values: { spec?: string; reason?: string; wave?: string; json?: boolean; "request-id"?: string },
  headers: Record<string, string> | undefined,
): Promise<void> {
  const id = () => {
    if (!arg) throw new CampaignUsageError(`pgshift ctl campaign ${verb} needs a campaign id`);
    return arg;
  };
  const reason = values.reason ?? "";
  switch (verb) {
    case "create": {
      if (!values.spec)
        throw new CampaignUsageError("pgshift ctl campaign create needs --spec FILE: a CampaignSpec in YAML or JSON");
      let spec;
      try {
        spec = fromJson(
          CampaignSpecSchema,
          documentFromFile(values.spec, "a CampaignSpec: a mapping with name, select, targets…"),
          { ignoreUnknownFields: false },
        );
      } catch (e) {
        if (e instanceof SpecInputError) throw new CampaignUsageError(e.message);
        throw new CampaignUsageError(`--spec ${values.spec}: ${(e as Error).message}`);
      }
      const res = await client.createCampaign({ spec, requestId: values["request-id"] ?? "" }, { headers });
      return line(res.campaign!);
    }
    case "list": {
      let pageToken = "";
      do {
        const res = await client.listCampaigns({ pageSize: 100, pageToken });
        for (const c of res.campaigns) line(c);
        pageToken = res.nextPageToken;
      } while (pageToken);
      return;
    }
    case "get":
      return line((await client.getCampaign({ id: id() })).campaign!);
    case "watch":
      for await (const res of client.watchCampaign({ id: id() })) {
        // A person at a terminal gets a line to read; a pipe or --json the campaign as JSON.
        if (!values.json && process.stdout.isTTY) process.stdout.write(campaignSummary(res.campaign!) + "\n");
        else line(res.campaign!);
      }
      return;
    case "pause":
      return line((await client.pauseCampaign({ id: id(), reason }, { headers })).campaign!);
    case "resume":
      return line((await client.resumeCampaign({ id: id(), reason }, { headers })).campaign!);
    case "cancel":
      return line((await client.cancelCampaign({ id: id(), reason }, { headers })).campaign!);
    case "approve-wave": {
      const wave = Number(values.wave);
      if (values.wave === undefined || !Number.isInteger(wave) || wave < 1)
        throw new CampaignUsageError("pgshift ctl campaign approve-wave ID needs --wave N (1 or more)");
      return line((await client.approveWave({ id: id(), wave, reason }, { headers })).campaign!);
    }
    default:
      throw new CampaignUsageError(`unknown campaign command "${verb ?? ""}"; one of ${CAMPAIGN_VERBS.join(", ")}`);
  }
}
