// The page's revoke button.
import { graphql } from "relay-runtime";

export const mutation = graphql`
  mutation RevokeTokenMutation($input: RevokeTokenInput!) {
    revokeToken(input: $input) {
      revokedTokenId
    }
  }
`;
