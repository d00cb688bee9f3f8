/** Names an instance of a provider: a local cluster's name, or an RDS/Aurora identifier (and region). */
export interface InstanceRef {
  id: string;
  region?: string;
}

/** Where clients reach an instance: an IP or a DNS name that moves on failover. */
export interface Endpoint {
  host: string;
  port: number;
}
