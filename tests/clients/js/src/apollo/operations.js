// The "my tokens" page's operations as an Apollo Client app writes them. apollo-run.mjs
// runs them; generate-persisted-query-manifest reads them to write Apollo's manifest.
import { gql } from "@apollo/client";

export const MY_TOKENS = gql`
  query MyTokens($first: Int!, $after: String) {
    tokens(first: $first, after: $after) {
      edges {
        cursor
        node {
          id
          name
          status
        }
      }
      pageInfo {
        endCursor
        hasNextPage
      }
    }
  }
`;

export const REVOKE_ONE = gql`
  mutation RevokeOne($id: ID!) {
    revokeToken(input: { id: $id }) {
      revokedTokenId
    }
  }
`;
