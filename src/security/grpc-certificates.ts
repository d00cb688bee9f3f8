import { experimental, type ServerCredentials } from "@grpc/grpc-js";
import type { TlsMaterial } from "./tls-material.js";
import type { Watched } from "./watched-files.js";

/**
 * grpc-js server credentials that require a client certificate from the trusted CA and follow the watched files:
 * a rotated certificate or CA reaches new connections without a restart.
 */
export function grpcMtlsCredentials(tls: Watched<TlsMaterial>): ServerCredentials {
  const ca = new Set<experimental.CaCertificateUpdateListener>();
  const identity = new Set<experimental.IdentityCertificateUpdateListener>();
  tls.onChange((m) => {
    for (const l of ca) l({ caCertificate: m.ca });
    for (const l of identity) l({ certificate: m.cert, privateKey: m.key });
  });
  // One provider serves both roles, so the order grpc-js takes them in does not matter.
  const provider: experimental.CertificateProvider = {
    addCaCertificateListener(l) {
      ca.add(l);
      // Later, not now: grpc-js registers its own watcher only after this returns, and would miss a synchronous update.
      setImmediate(() => ca.has(l) && l({ caCertificate: tls.current().ca }));
    },
    removeCaCertificateListener: (l) => void ca.delete(l),
    addIdentityCertificateListener(l) {
      identity.add(l);
      setImmediate(() => identity.has(l) && l({ certificate: tls.current().cert, privateKey: tls.current().key }));
    },
    removeIdentityCertificateListener: (l) => void identity.delete(l),
  };
  return experimental.createCertificateProviderServerCredentials(provider, provider, true);
}
