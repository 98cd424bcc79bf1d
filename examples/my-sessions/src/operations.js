import { gql } from "@apollo/client";

// The caller's own tokens: `viewer` is bound to the signed-in user by the gateway.
// Revoked tokens are left out unless `filter: {statuses: [...]}` asks for them.
export const MY_TOKENS = gql`
  query MyTokens($first: Int!, $after: String) {
    viewer {
      subject
      tokens(first: $first, after: $after) {
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
