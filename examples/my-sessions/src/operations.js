import { gql } from "@apollo/client";

// The caller's own live tokens: `viewer` is bound to the signed-in user by the gateway.
// Revoked internal tokens are kept for audit with status REVOKED: not a session any more.
export const MY_TOKENS = gql`
  query MyTokens($first: Int!, $after: String) {
    viewer {
      subject
      tokens(first: $first, after: $after, filter: { statuses: [ACTIVE, INACTIVE, EXPIRED] }) {
        edges {
          node {
            id
            name
            deviceName
            clientName
            status
            createdAt
            source {
              key
              name
            }
          }
        }
        pageInfo {
          hasNextPage
          endCursor
        }
      }
    }
  }
`;

export const REVOKE = gql`
  mutation Revoke($id: ID!) {
    revokeToken(input: { id: $id }) {
      revokedTokenId
    }
  }
`;
