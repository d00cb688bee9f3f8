import { createSecureContext } from "node:tls";
import { InvalidArgumentError } from "../domain/errors.js";
import { watchFiles, type Watched, type WatchOptions } from "./watched-files.js";

/** Where a server's mutual-TLS material lives. */
export interface TlsFiles {
  /** The server's certificate chain (PEM). */
  certFile: string;
  /** Its private key (PEM). */
  keyFile: string;
  /** The CA(s) whose client certificates are trusted (PEM). */
  clientCaFile: string;
}

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

/** Loads the files and checks that they make a usable context (key matches certificate, PEM parses). */
function material([cert, key, ca]: Buffer[], files: TlsFiles): TlsMaterial {
  const m = { cert: cert!, key: key!, ca: ca! };
  try {
    createSecureContext(m);
  } catch (e) {
    throw new InvalidArgumentError(
      `the TLS files ${files.certFile}, ${files.keyFile} and ${files.clientCaFile} do not make a usable TLS context: ${(e as Error).message}`,
    );
  }
  return m;
}

/** The server's TLS material, reloaded when the files change (a rotated certificate takes effect without a restart). */
export function watchTls(files: TlsFiles, opts: WatchOptions = {}): Promise<Watched<TlsMaterial>> {
  return watchFiles([files.certFile, files.keyFile, files.clientCaFile], (b) => material(b, files), opts);
}
