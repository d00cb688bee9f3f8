import type { UNDECODABLE } from "./envoy-protos.js";

/**
 * The ADS messages as they arrive decoded (field names as in the .proto files; 64-bit integers and enums as
 * strings), only the fields this server reads or writes. Every field may be absent: a client sends what it likes.
 */
export interface WireNode {
  id?: string;
  cluster?: string;
  metadata?: unknown;
}

interface ErrorDetail {
  code?: number;
  message?: string;
}

export interface DiscoveryRequest {
  version_info?: string;
  node?: WireNode;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: ErrorDetail;
}

export interface DeltaDiscoveryRequest {
  node?: WireNode;
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: ErrorDetail;
}

/** A request that did not decode, with the reason (see envoy-protos.ts). */
export interface Undecodable {
  [UNDECODABLE]: string;
}

export interface AnyResource {
  type_url: string;
  value: Buffer;
}

export interface DiscoveryResponse {
  version_info: string;
  type_url: string;
  nonce: string;
  resources: AnyResource[];
}

export interface DeltaDiscoveryResponse {
  system_version_info: string;
  type_url: string;
  nonce: string;
  resources: { name: string; version: string; resource: AnyResource }[];
  removed_resources: string[];
}

/** What a client gave as the reason it rejected a response. */
export const rejection = (d: ErrorDetail) => String(d.message ?? "rejected");
