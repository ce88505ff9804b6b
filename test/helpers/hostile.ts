/**
 * Hostile text for the safe-output fuzz tests (issue 11): what a login form, an application
 * row or a malicious channel member can put where Warden shows text it did not write.
 */
export const HOSTILE: Record<string, string> = {
  mentions: '<!channel> <!here|here> <@U0EVIL> <#C0EVIL|general> <!subteam^S0EVIL>',
  link: '<https://evil.example/login|Re-login now> <http://x.example> <mailto:a@b.example|mail>',
  entities: '& < > &amp; &lt;!channel&gt; a&b<c>d',
  long: 'A'.repeat(3200) + '<!channel>',
  control: 'ctl\u0000\u0007\u001b[31mred\r\n*Role*\nadmin\u2028\u0085\u007f',
  rtl: 'user\u202Egnp.exe\u2066\u200F\u061C',
  emoji: '🔥👩‍💻🏳️‍🌈 :rotating_light: <!everyone>',
  markup: '*bold* _it_ ~s~ `code` ```block``` > quote',
};
