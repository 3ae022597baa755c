// POST /api/notify {"userId", "title", "body"?} -> publishes a `notification` to every tab of
// that user through Herald and answers the hub's {"id", "delivered"}.
import { HeraldError } from '@herald/client/publisher';
import { herald } from '@/lib/herald';

export async function POST(request: Request) {
  let input: { userId?: unknown; title?: unknown; body?: unknown };
  try {
    input = (await request.json()) ?? {};
  } catch {
    return Response.json({ error: 'the body must be JSON' }, { status: 400 });
  }
  const { userId, title, body } = input;
  if (typeof userId !== 'string' || !userId || typeof title !== 'string' || !title) {
    return Response.json({ error: 'userId and title are required strings' }, { status: 400 });
  }
  // A real app checks the session here: who may notify whom (this demo lets anyone notify anyone).
  try {
    const { id, delivered } = await herald.sendNotification(userId, title, typeof body === 'string' ? body : '', 'info');
    // delivered === 0: the user has no tab open; fall back to email or push if it matters.
    return Response.json({ id, delivered });
  } catch (err) {
    if (err instanceof HeraldError) {
      // status 0: no answer (hub down, timeout); otherwise the hub's own error code.
      return Response.json({ error: err.code, message: err.message }, { status: err.status === 0 ? 504 : 502 });
    }
    throw err;
  }
}
