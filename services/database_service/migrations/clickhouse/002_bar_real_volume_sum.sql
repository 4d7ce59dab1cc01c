-- A bar's real_volume is the sum of its ticks' volumes, each up to Decimal64(8)'s
-- 10 integer digits: Decimal128(8) holds the sum of any number of ticks a bar can have.
ALTER TABLE market.bars MODIFY COLUMN real_volume Decimal128(8);
