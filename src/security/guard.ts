import { Policy } from "./policy.js";
import { watchTls, type TlsFiles, type TlsMaterial } from "./tls-material.js";
import { watchFiles, type Watched } from "./watched-files.js";

/** What the service's listeners enforce: who a peer must prove to be, and what each identity may do. */
export interface Guard {
  /** Mutual TLS material, or undefined for a cleartext (--insecure) service. */
  tls: Watched<TlsMaterial> | undefined;
  policy(): Policy;
  close(): void;
}

export interface GuardOptions {
  tls: TlsFiles | undefined;
  policyFile: string | undefined;
  reloadMs: number;
  /** A changed file that does not load: the last good one stays in force. */
  onReloadError(what: string, error: Error): void;
  onReload(what: string): void;
}

/** Loads the certificates and the policy (refusing to start on a bad one) and keeps them current. */
export async function openGuard(opts: GuardOptions): Promise<Guard> {
  const watch = { intervalMs: opts.reloadMs };
  const tls = opts.tls
    ? await watchTls(opts.tls, { ...watch, onError: (e) => opts.onReloadError("tls", e) })
    : undefined;
  const file = opts.policyFile;
  const parsePolicy = file ? (await import("./policy-file.js")).parsePolicy : undefined;
  const policy =
    file && parsePolicy
      ? await watchFiles([file], ([b]) => parsePolicy(b!.toString("utf8"), file), {
          ...watch,
          onError: (e) => opts.onReloadError("policy", e),
        })
      : undefined;
  tls?.onChange(() => opts.onReload("tls"));
  policy?.onChange(() => opts.onReload("policy"));
  const open = Policy.allowAll();
  return {
    tls,
    policy: () => policy?.current() ?? open,
    close() {
      tls?.close();
      policy?.close();
    },
  };
}
