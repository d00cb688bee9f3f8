/** The parts of a peer certificate (as node:tls describes it) an identity is read from. */
export interface CertificateNames {
  subjectaltname?: string;
  subject?: { CN?: string | string[] } | null;
}

/**
 * Who a client certificate names: its SPIFFE ID (a URI SAN `spiffe://…`), else its subject's common name.
 * undefined when it names neither, which callers treat as unauthenticated.
 */
export function certificateIdentity(cert: CertificateNames | undefined): string | undefined {
  if (!cert) return undefined;
  // node:tls joins SANs with ", " and quotes a value holding a comma: "URI:spiffe://a/b, DNS:x".
  for (const entry of (cert.subjectaltname ?? "").split(/,\s*(?=[A-Za-z ]+:)/)) {
    const m = /^URI:"?(spiffe:\/\/[^"\s]+)"?$/.exec(entry.trim());
    if (m) return m[1];
  }
  const cn = cert.subject?.CN;
  const name = Array.isArray(cn) ? cn[0] : cn;
  return name ? name : undefined;
}
