// API docs: the OpenAPI document rendered, every operation listed, one opened with its
// parameters and their constraints; the filter narrows the list.

import assert from 'node:assert/strict';
import { visit, api } from '../harness.mjs';

export async function run(ctx) {
  const { data: doc } = await api(ctx.base, '/api/openapi.json');
  let operations = 0;
  for (const item of Object.values(doc.paths)) {
    operations += ['get', 'put', 'post', 'patch', 'delete', 'head', 'options'].filter((m) => item[m]).length;
  }
  await visit(ctx, 'docs', '/docs', {
    ready: (page) => page.locator('.op').first().waitFor(),
    interact: async (page) => {
      assert.equal(await page.locator('.op').count(), operations);
      const images = page.locator('.op', { has: page.locator('.path', { hasText: /^\/api\/v1\/images$/ }) }).filter({ has: page.locator('.m-get') });
      await images.locator('summary').focus();
      await page.keyboard.press('Enter');
      const body = images.locator('.body');
      await body.waitFor();
      const text = await body.textContent();
      assert.match(text, /pageSize|page_size/, 'the list route shows its page size parameter');
      await page.fill('#filter', 'reviewStats');
      const visible = await page.locator('.op:not([hidden])').count();
      assert.ok(visible >= 1 && visible < operations, `the filter shows ${visible} of ${operations}`);
      await page.fill('#filter', '');
    },
  });
}
