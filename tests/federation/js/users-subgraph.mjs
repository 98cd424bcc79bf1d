// A small users subgraph: it owns `User` (id, email) and `Query.user`; tokengate adds each
// user's `tokens`. The ids are users of the OAuth-style simulator (key "idp").
import { buildSubgraphSchema } from "@apollo/subgraph";
import { parse } from "graphql";

export const USERS = new Map([
  ["anna.de.vries@example.com", { id: "anna.de.vries@example.com", email: "anna.de.vries@example.com" }],
  ["bram.jansen", { id: "bram.jansen", email: "bram.jansen@example.net" }],
  ["chloe@example.org", { id: "chloe@example.org", email: "chloe@example.org" }],
]);

const typeDefs = parse(`
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key"])

  type User @key(fields: "id") {
    id: ID!
    email: String!
  }

  type Query {
    user(id: ID!): User
  }
`);

const resolvers = {
  Query: {
    user: (_parent, { id }) => USERS.get(id) ?? null,
  },
  User: {
    __resolveReference: (reference) => USERS.get(reference.id) ?? null,
  },
};

export const usersTypeDefs = typeDefs;
export const usersSchema = () => buildSubgraphSchema([{ typeDefs, resolvers }]);
