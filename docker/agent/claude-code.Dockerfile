# Claude Code in a bottle agent image: `bottle-agent` (Debian, node 18, user
# `agent`) plus the `@anthropic-ai/claude-code` npm package.
#
# NOT built by CI: npm's registry is unreachable where CI runs. Build it on a
# machine whose Docker can reach Docker Hub and registry.npmjs.org, through a
# manifest (`bottle run` / `bottle build` build it and tag it by content):
#
#   agents:
#     claude:
#       bottle: dev
#       build: {dockerfile: docker/agent/claude-code.Dockerfile, context: docker/agent}
#       command: [bash, -c, 'exec claude --mcp-config "$BOTTLE_MCP_CONFIG"
#                 --append-system-prompt "$(cat {prompt_file})"']
#
# bottle-agent has node but no npm, so npm runs in a node image and only the
# installed package is copied over.
FROM node:20-bookworm-slim AS npm
ARG CLAUDE_CODE_VERSION=latest
RUN npm install -g --omit=dev "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" \
 && npm cache clean --force

FROM bottle-agent:latest
COPY --from=npm /usr/local/lib/node_modules/@anthropic-ai/claude-code /opt/claude-code
USER root
RUN ln -s /opt/claude-code/cli.js /usr/local/bin/claude
USER agent
WORKDIR /workspace
CMD ["claude"]
