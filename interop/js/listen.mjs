// A peer of another libp2p implementation (js-libp2p, from npm, default settings but gossipsub's
// signature policy, StrictNoSign as SPEC §11.3 says: Cairn's gossip is unsigned by libp2p) joining a
// Cairn coordinator: it dials the address given, subscribes to a task topic, and prints each
// gossip message it receives as one JSON line on stdout. Run by coordinator/tests/interop_js.rs.
//
//   node listen.mjs <coordinator multiaddr> <topic> <messages to wait for> <timeout secs>
//
// Exit status: 0 after the messages arrived, 1 on a timeout or a closed connection.
// Node.js 20 (Debian's and this machine's) lacks Promise.withResolvers (Node.js 22), which
// some of js-libp2p's dependencies call: the standard polyfill, before they load.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { gossipsub } = await import('@chainsafe/libp2p-gossipsub')
const { multiaddr } = await import('@multiformats/multiaddr')

const [addr, topic, wantArg, timeoutArg] = process.argv.slice(2)
const want = Number(wantArg ?? 1)
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n')

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, globalSignaturePolicy: 'StrictNoSign' }) }
})

let got = 0
const finish = async (code, why) => {
  say({ event: 'exit', code, why })
  await node.stop().catch(() => {})
  process.exit(code)
}
setTimeout(() => finish(1, 'timeout'), Number(timeoutArg ?? 60) * 1000)

let coordinator = null
node.addEventListener('peer:disconnect', (e) => {
  say({ event: 'disconnected', peer: e.detail.toString() })
  if (coordinator !== null && e.detail.toString() === coordinator) finish(1, 'the coordinator closed the connection')
})
node.services.pubsub.addEventListener('message', (e) => {
  const m = e.detail
  if (m.topic !== topic) return
  say({ event: 'message', topic: m.topic, from: m.type === 'signed' ? m.from.toString() : null, data: Buffer.from(m.data).toString('hex') })
  got += 1
  if (got >= want) finish(0, 'done')
})
node.services.pubsub.subscribe(topic)

const conn = await node.dial(multiaddr(addr))
coordinator = conn.remotePeer.toString()
say({ event: 'connected', peer: coordinator, self: node.peerId.toString() })
