// A real OpenID Provider on loopback for medmesh's external-login tests.
// Usage: REDIRECT_URI=http://127.0.0.1:PORT/login/external/hospital/callback node provider.js
// Prints "issuer <url>" once listening. devInteractions signs in any login name with any
// password.
// Login names starting with "dr" get the role claim "clinician", others "patient-role".
import http from 'node:http';
import Provider from 'oidc-provider';

const redirect = process.env.REDIRECT_URI;
if (!redirect) {
  console.error('REDIRECT_URI is required');
  process.exit(2);
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'medmesh',
        client_secret: 'medmesh-secret',
        redirect_uris: [redirect],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'lab-robot',
        client_secret: 'lab-secret',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'system/Observation.rs',
      },
    ],
    scopes: ['openid', 'profile', 'system/Observation.rs'],
    claims: { openid: ['sub'], profile: ['preferred_username', 'roles', 'fhirUser'] },
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:medmesh',
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'system/Observation.rs',
          audience: 'medmesh-api',
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            preferred_username: id,
            roles: id.startsWith('dr') ? ['staff', 'clinician'] : ['patient-role'],
            fhirUser: id.startsWith('dr') ? 'Practitioner/dr1' : 'Patient/p1',
          };
        },
      };
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  server.on('request', provider.callback());
  console.log(`issuer ${issuer}`);
});
