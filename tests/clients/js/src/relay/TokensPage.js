// A "my tokens" page as a Relay app writes it: a paginated list and a revoke button.
// relay-compiler reads the graphql tags; the page's runtime loads the generated artifacts.
import { graphql } from "relay-runtime";

export const query = graphql`
  query TokensPageQuery($first: Int!) {
    ...TokensPage_tokens @arguments(first: $first)
  }
`;

export const fragment = graphql`
  fragment TokensPage_tokens on Query
  @refetchable(queryName: "TokensPagePaginationQuery")
  @argumentDefinitions(
    first: { type: "Int", defaultValue: 2 }
    after: { type: "String" }
  ) {
    tokens(first: $first, after: $after) @connection(key: "TokensPage_tokens") {
      edges {
        node {
          id
          name
          status
          source {
            key
          }
        }
      }
    }
  }
`;
