/** @type {import('next').NextConfig} */
const nextConfig = {
  // Nothing Herald-specific is needed: the browser talks to the hub directly (CORS on the hub,
  // `--cors-origins http://localhost:3000`), and route handlers publish to it over HTTP.
  reactStrictMode: true,
};

export default nextConfig;
