import { Notifications } from './notifications';

// The user would come from your session; this demo takes it from the URL: /?user=bob
export default async function Home({ searchParams }: { searchParams: Promise<{ user?: string | string[] }> }) {
  const { user } = await searchParams;
  const userId = (Array.isArray(user) ? user[0] : user) || 'alice';
  return (
    <main>
      <h1>Herald + Next.js</h1>
      <Notifications userId={userId} />
    </main>
  );
}
