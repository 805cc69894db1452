// Every GraphQL document the dashboard sends — queries, mutations, subscriptions — and the
// fragments they share, in one module, so that one place says what the dashboard asks of the
// API and a test can check each document against the server's schema
// (tests/api/support/documents.rs reads this file as the server serves it).
//
// The rules that test relies on: every export is a constant holding one template literal,
// whose only interpolations are other constants of this file, each written as a bare name. A
// document that spreads a fragment appends that fragment's constant once (GraphQL refuses a
// fragment defined twice, and one defined but not used).

/** What a tile shows; every tile event and mutation answer carries all of it. */
export const TILE_FIELDS = `fragment TileFields on GraphApiTile {
  id clientId status headline version statusChangedAt consentLinkExpiresAt authorisedAt lastVerifiedAt
  availableActions grantedPermissions missingPermissions
  problem { code aadstsCode message remediation appId appDisplayName }
  tenantProof { signedInAs }
}`;

/** One service principal repair, as its row shows it (the sign-in link is asked for apart). */
export const REPAIR_FIELDS = `fragment RepairFields on ServicePrincipalRequest {
  id clientId appId appDisplayName status problemCode problemMessage remediation updatedAt
}`;

/** One delegated consent, as the consents table shows it. */
export const CONSENT_FIELDS = `fragment ConsentFields on DelegatedConsent {
  id clientId userPrincipalName displayName permissions missingPermissions status
  statusReason grantedAt lastRefreshedAt
}`;

// The signed-in caller (app.js).

export const VIEWER = `query Viewer {
  viewer { subject roles canWrite readsAllMsps msp { id name } tokenExpiresAt }
}`;

// The clients list (clients.js): one page at a time, never the whole list.

export const CLIENTS_PAGE = `query Clients($first: Int!, $after: String, $filter: ClientFilterInput) {
  clients(first: $first, after: $after, filter: $filter) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes {
      id name domain
      graphApiTile { ...TileFields }
      servicePrincipalRequests(first: 1) { ...RepairFields }
    }
  }
}
${TILE_FIELDS}
${REPAIR_FIELDS}`;

/**
 * The count of clients in each status beside the status filter, and all of them: the server
 * counts (`statusCounts` ignores the filter's own status list); no client is fetched.
 */
export const CLIENT_COUNTS = `query ClientCounts($filter: ClientFilterInput) {
  clients(first: 1, filter: $filter) { totalCount statusCounts { status count } }
}`;

// A tile's buttons (tile.js).

export const AUTHORISE = `mutation Authorise($clientId: ID!) {
  authoriseGraphApi(clientId: $clientId) { url expiresAt graphApiTile { ...TileFields } }
}
${TILE_FIELDS}`;

export const VERIFY = `mutation Verify($clientId: ID!) {
  verifyGraphApi(clientId: $clientId) { ...TileFields }
}
${TILE_FIELDS}`;

export const CREATE_SERVICE_PRINCIPAL = `mutation Repair($clientId: ID!, $appId: String) {
  createServicePrincipal(clientId: $clientId, appId: $appId) { ...RepairFields signInUrl }
}
${REPAIR_FIELDS}`;

// Delegated consents (consents.js).

export const CONSENTS = `query Consents($id: ID!) {
  client(id: $id) { delegatedConsents(first: 50) { ...ConsentFields } }
}
${CONSENT_FIELDS}`;

export const PERMISSION_CATALOG = `query Catalog {
  delegatedPermissions { permission displayName description adminConsentRequired }
}`;

export const START_CONSENT = `mutation StartConsent($clientId: ID!, $permissions: [DelegatedPermission!]!) {
  startDelegatedConsent(clientId: $clientId, permissions: $permissions) { url expiresAt }
}`;

export const VERIFY_CONSENT = `mutation VerifyConsent($id: ID!) {
  verifyDelegatedConsent(id: $id) { ...ConsentFields }
}
${CONSENT_FIELDS}`;

export const REVOKE_CONSENT = `mutation RevokeConsent($id: ID!) {
  revokeDelegatedConsent(id: $id) { ...ConsentFields }
}
${CONSENT_FIELDS}`;

// The audit trail (audit.js), ten at a time.

export const AUDIT_LOG = `query Audit($id: ID!, $first: Int!, $after: String) {
  client(id: $id) {
    auditLog(first: $first, after: $after) {
      edges { node { id action at actorSubject actorMspId actorRoles details } }
      pageInfo { hasNextPage endCursor }
    }
  }
}`;

// Live updates (app.js): one subscription each for the MSP's tiles, repairs and consents.
// Every event names its client (`clientId`), which is how the list places it.

export const TILE_CHANGED = `subscription TileChanged($mspId: String) {
  graphApiTileChanged(mspId: $mspId) { ...TileFields }
}
${TILE_FIELDS}`;

export const REPAIR_CHANGED = `subscription RepairChanged($mspId: String) {
  servicePrincipalRequestChanged(mspId: $mspId) { ...RepairFields }
}
${REPAIR_FIELDS}`;

export const CONSENT_CHANGED = `subscription ConsentChanged($mspId: String) {
  delegatedConsentChanged(mspId: $mspId) { ...ConsentFields }
}
${CONSENT_FIELDS}`;
